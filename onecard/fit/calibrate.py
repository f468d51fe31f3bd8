"""`onecard fit calibrate`: per-card, per-stack corrections from this machine's observations, and what they change.

Each observation (`onecard.fit.observations`) is planned again with today's planner, uncalibrated, on the card it ran
on; its ratio is measured / predicted, on the figure it measured. The correction is the median ratio (a robust scale
on the point estimate that one odd run cannot drag) of the job's mechanism group on that card (its stack or runtime,
`bound.group_of`: llm-train/transformers is not llm-train/torchtune, llm-infer/llama.cpp is not
llm-infer/transformers) where the group has `MIN_OBSERVATIONS` of its own, else of its job kind on that card (every
stack's observations) where the kind has that many, else none. Fed the public measurements as a user's runs
(`benchmarks/fit_calibration.py --compare`), the two levels leave the most observations within 10% (67 of 76
development, 182 of 300 from the spent splits), a correction per kind alone the lowest median (1.1% and 6.8%).

What it changes is reported on the same observations, before and after, and the "after" is leave-one-out: each
observation is predicted with the correction the others would give it (its group's, else its kind's), so a
correction cannot look good by memorizing the runs it was fitted on. The corrections are saved to
<ONECARD_HOME>/fit/calibration.json (`bound.calibration_file`), which `plan.judge` reads from then on.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from onecard.core.errors import OnecardError
from onecard.core.records import write_json_atomic
from onecard.fit import observations as obs_store
from onecard.fit.bound import calibration_file, plausible_scale
from onecard.fit.plan import resolve_arch, resolve_card

__all__ = ["Group", "Calibration", "calibrate", "fit_groups", "MIN_OBSERVATIONS"]

# A median of three already ignores one odd run; with fewer, one run would set the correction alone.
MIN_OBSERVATIONS = 3


@dataclass
class Group:
    """The observations of one card and mechanism group, and the correction fitted on them.

    Errors are predicted / measured - 1 (negative: under-predicted), as benchmarks/fit_accuracy.py prints them.
    """

    card: str
    kind: str  # the mechanism group (`bound.group_of`): a job kind, or kind/stack where the kind has several
    ratios: list[float]  # measured / predicted (uncalibrated), one per observation
    scale: float | None  # the group's own correction: median ratio; None below MIN_OBSERVATIONS
    before: list[float] = field(default_factory=list)  # errors without correction
    after: list[float] = field(default_factory=list)  # errors with the leave-one-out correction
    job_kind: str = ""  # the job kind the group belongs to (`bound.kind_of`)
    kind_scale: float | None = None  # the job kind's correction on the card, which applies where `scale` is None
    untested: int = 0  # observations whose others are too few for a correction: their `after` is their `before`

    @property
    def observations(self) -> int:
        return len(self.ratios)


@dataclass
class Calibration:
    """What `onecard fit calibrate` found and saved."""

    groups: list[Group]
    observations_file: str
    saved_to: str | None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"observations_file": self.observations_file, "saved_to": self.saved_to,
                "min_observations": MIN_OBSERVATIONS, "notes": self.notes, "corrections": _corrections(self.groups),
                "groups": [asdict(g) | {"observations": g.observations} | _summary(g.before, "before")
                           | _summary(g.after, "after") for g in self.groups],
                "overall": _summary([e for g in self.groups for e in g.before], "before")
                | _summary([e for g in self.groups for e in g.after], "after")}


def _summary(errors: list[float], name: str) -> dict[str, float | None]:
    """Median |error| and the worst under-prediction (most negative error, 0 when none is under)."""
    return {f"{name}_median_abs_error": round(statistics.median(abs(e) for e in errors), 4) if errors else None,
            f"{name}_worst_under": round(min(min(errors), 0.0), 4) if errors else None}


def _median_scale(ratios: list[float]) -> float | None:
    return statistics.median(ratios) if len(ratios) >= MIN_OBSERVATIONS else None


Row = tuple[str, str, str, float]  # card, job kind, mechanism group, measured / predicted


def fit_groups(rows: list[Row]) -> list[Group]:
    """The corrections per (card, mechanism group), and per (card, job kind) for the groups without enough of their
    own, from each observation's measured / predicted ratio; with before and leave-one-out errors."""
    by_group: dict[tuple[str, str], list[int]] = defaultdict(list)
    by_kind: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (card, kind, group, _) in enumerate(rows):
        by_group[(card, group)].append(i)
        by_kind[(card, kind)].append(i)

    def scale(members: list[int], leave: int | None = None) -> float | None:
        return _median_scale([rows[j][3] for j in members if j != leave])

    groups = []
    for (card, name), members in sorted(by_group.items()):
        kind = rows[members[0]][1]
        ratios = [rows[i][3] for i in members]
        found = Group(card, name, ratios, scale(members), before=[1 / r - 1 for r in ratios], job_kind=kind,
                      kind_scale=scale(by_kind[(card, kind)]))
        for i in members:
            fix = scale(members, i) or scale(by_kind[(card, kind)], i)
            found.untested += fix is None
            found.after.append((fix or 1.0) / rows[i][3] - 1)
        groups.append(found)
    return groups


def calibrate(path: Path | None = None, save: bool = True) -> Calibration:
    """Fit the corrections from the observations file and save them (`save`), replacing earlier ones.

    Args:
        path: the observations file; None: <ONECARD_HOME>/fit/observations.jsonl.
        save: write calibration.json; False only reports.

    Raises:
        DataError: a line of the observations file is not an observation (named by file and line).
    """
    path = obs_store.observations_file() if path is None else path
    found = obs_store.load(path)
    notes: list[str] = []
    rows: list[Row] = []
    for o in found:
        job = o.fit_job()
        try:
            resolved = resolve_arch(job.model)
            card = resolve_card(job)
            predicted = obs_store.predicted_figure(resolved.estimate(job, card), o.figure,
                                                   card.usable_gib if card is not None else None)
            kind, group = resolved.kind(job), resolved.group(job)
        except OnecardError as e:  # the model is gone (a deleted folder): the planner's figure of the day it ran
            predicted, kind, group = o.predicted_gib, o.kind, o.group or o.kind
            notes.append(f"{o.source or o.at}: planned as recorded ({str(e).splitlines()[0]})")
        if not predicted > 0:
            continue
        ratio = o.measured_gib / predicted
        if not plausible_scale(ratio):
            notes.append(f"{o.source or o.at}: left out, measured {o.measured_gib:.3g} GiB against {predicted:.3g} "
                         f"planned (x{ratio:.3g}: another job or another unit, not the planner's error)")
            continue
        rows.append((o.card, kind, group, ratio))
    groups = fit_groups(rows)
    target = calibration_file()
    if save and not rows:
        save = False
        notes.append(f"no usable observation: {target} is left as it was" if target.exists() else
                     "no usable observation: nothing saved")
    if save:
        write_json_atomic(target, {
            "written_by": "onecard fit calibrate", "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "observations_file": str(path), "min_observations": MIN_OBSERVATIONS, "corrections": _corrections(groups)})
    return Calibration(groups, str(path), str(target) if save else None, notes)


def _corrections(groups: list[Group]) -> list[dict[str, Any]]:
    """calibration.json's entries: each group's own correction, and each job kind's on a card (its groups'
    observations together), which `bound.correction` takes for a group without one of its own."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for g in groups:
        if g.kind_scale is not None and g.job_kind != g.kind:
            n = sum(o.observations for o in groups if (o.card, o.job_kind) == (g.card, g.job_kind))
            out[(g.card, g.job_kind)] = {"card": g.card, "kind": g.job_kind, "scale": round(g.kind_scale, 4),
                                         "observations": n}
    for g in groups:
        if g.scale is not None:
            out[(g.card, g.kind)] = {"card": g.card, "kind": g.kind, "scale": round(g.scale, 4),
                                     "observations": g.observations}
    return list(out.values())

"""`onecard fit calibrate`: per-card, per-kind corrections from this machine's observations, and what they change.

Each observation (`onecard.fit.observations`) is planned again with today's planner, uncalibrated, on the card it ran
on; its ratio is measured / predicted, on the figure it measured. Per (card, job kind) with at least
`MIN_OBSERVATIONS` observations, the correction is the median ratio: a robust scale on the point estimate that one
odd run cannot drag. Fewer observations give no correction.

What it changes is reported on the same observations, before and after, and the "after" is leave-one-out: each
observation is predicted with the median of the others (no correction where fewer than `MIN_OBSERVATIONS` others
remain), so a correction cannot look good by memorizing the runs it was fitted on. The corrections are saved to
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
from onecard.fit.bound import calibration_file
from onecard.fit.plan import resolve_arch, resolve_card

__all__ = ["Group", "Calibration", "calibrate", "fit_groups", "MIN_OBSERVATIONS"]

# A median of three already ignores one odd run; with fewer, one run would set the correction alone.
MIN_OBSERVATIONS = 3


@dataclass
class Group:
    """The observations of one card and job kind, and the correction fitted on them.

    Errors are predicted / measured - 1 (negative: under-predicted), as benchmarks/fit_accuracy.py prints them.
    """

    card: str
    kind: str
    ratios: list[float]  # measured / predicted (uncalibrated), one per observation
    scale: float | None  # the correction: median ratio; None below MIN_OBSERVATIONS
    before: list[float] = field(default_factory=list)  # errors without correction
    after: list[float] = field(default_factory=list)  # errors with the leave-one-out correction

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
                "min_observations": MIN_OBSERVATIONS, "notes": self.notes,
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


def fit_groups(ratios: dict[tuple[str, str], list[float]]) -> list[Group]:
    """The correction per (card, kind) from measured / predicted ratios, with before and leave-one-out errors."""
    groups = []
    for (card, kind), rs in sorted(ratios.items()):
        group = Group(card, kind, rs, _median_scale(rs), before=[1 / r - 1 for r in rs])
        for i, r in enumerate(rs):
            others = _median_scale(rs[:i] + rs[i + 1:])
            group.after.append((others or 1.0) / r - 1)
        groups.append(group)
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
    ratios: dict[tuple[str, str], list[float]] = defaultdict(list)
    for o in found:
        job = o.fit_job()
        try:
            resolved = resolve_arch(job.model)
            card = resolve_card(job)
            predicted = obs_store.predicted_figure(resolved.estimate(job, card), o.figure,
                                                   card.usable_gib if card is not None else None)
            kind = resolved.kind(job)
        except OnecardError as e:  # the model is gone (a deleted folder): the planner's figure of the day it ran
            predicted, kind = o.predicted_gib, o.kind
            notes.append(f"{o.source or o.at}: planned as recorded ({str(e).splitlines()[0]})")
        if predicted > 0:
            ratios[(o.card, kind)].append(o.measured_gib / predicted)
    groups = fit_groups(dict(ratios))
    target = calibration_file()
    if save:
        write_json_atomic(target, {
            "written_by": "onecard fit calibrate", "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "observations_file": str(path), "min_observations": MIN_OBSERVATIONS,
            "corrections": [{"card": g.card, "kind": g.kind, "scale": round(g.scale, 4),
                             "observations": g.observations} for g in groups if g.scale is not None]})
    return Calibration(groups, str(path), str(target) if save else None, notes)

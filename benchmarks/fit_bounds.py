"""The safe bound per job kind and mechanism group, from the planner's errors on the cases it has been scored on:
writes onecard/fit/bounds.json, which `onecard fit` bounds every answer with.

    python benchmarks/fit_bounds.py [--check]

Cases: the development set as benchmarks/fit_accuracy.py reads and scores it (benchmarks/fit_cases/*.yaml and
benchmarks/fit_cases/public/dev/*.yaml, the same scoring rule: `fit_accuracy.load` and `fit_accuracy.scored`) and the
held-out splits already scored (a record benchmarks/fit_cases/public/<split>_scored.json exists), all planned now:
a split is development data once scored. This script never reads a split that has no record yet (it is the bound's
test).

Why planned now, not as recorded (2026-12-07, the fifth split's bound): the bound before it read each spent split as
its one scoring recorded it, the planner of that day. After heldout4 that kept errors of mechanisms the planner has
modelled since (PEFT's fp32 cast of a QLoRA base: a 44.5 % margin for every transformers-stack fine-tune, `tune`'s
included; LitGPT's untied head; NVML's device-wide readings) while the misses nobody has explained (optimum-
benchmark's quantized runs, x-stable-diffusion's 2022 stack, WIDER FACE, torchtune 0.1) stay in either way. Each
split's record stays its held-out figure; the next split is the bound's test (the earlier bounds, fitted on records
or on development alone, covered 85 %, 64 %, 37 % and 75 % of the split after them).

Rule (`fit_bound`, `margins`): over the scored whole-peak cases (allocated, reserved or process; a part:<name> case
is not a peak), each a (predicted, measured) pair of the same figure with the point estimate uncalibrated, the
bound is upper = predicted x (1 + margin) + abs_gib: a part that grows
with the job and one that does not (workspaces, buffers, allocator rounding, which dominate small jobs' errors). It
is chosen to be at or above the measured figure of COVERAGE (95 %) of the cases' weight, each source (a public case
file, a measured.md row: `source_of`) weighing 1 however many cases it has, and to be lowest at REFERENCE_GIB
(11.2 GiB, a 12 GB card's budget: the 11.70 GiB CUDA can allocate on an RTX 4070 Ti less the 0.5 GiB margin, where
`fits` matters most). margin is rounded up to 0.5 % and at least
  MIN_MARGIN  5 %  for every kind: runs of the same job move by a few percent with the driver, library versions and
                   the allocator's fragmentation, which no case set of this size pins down;
  FEW_MARGIN 15 %  for a kind with fewer than FEW_CASES (5) scored cases: a worst case of so few is no tail
                   estimate; 15 % is issue 13's bound on an acceptable under-prediction;
abs_gib is rounded up to 0.01 GiB. It is fitted per job kind (`onecard.fit.bound.kind_of`) over all its cases, and
per mechanism group (`onecard.fit.bound.group_of`: the library an LLM training stack builds on, the LLM runtime, the
diffusion offload mode, the YOLO task) for a group with FEW_CASES or more cases from FEW_SOURCES sources of its own;
any other job takes its kind's. A kind without any scored case gets the widest of its model family's kinds (same
architecture facts and overheads, another job; tinylm's family is llm), margin at least FEW_MARGIN; a kind of a
family without cases, and any kind not listed, the widest of all kinds.

A group keeps its own bound only with FEW_CASES cases from FEW_SOURCES (20) sources of its own (since 2026-12-07,
sixth split): each source weighs 1, and the bound may leave 5 % of the weight above it, so over fewer than 20 sources
it is the group's worst source (one harness's reading decides a whole group: ms-swift's five Yi-6B rows would have
set the transformers stack's fine-tunes, `tune`'s included, at +72.5 %); below that the kind's bound, over all its
sources, stands. Decided after heldout5's scoring, which showed that refit; disclosed in RESULTS.

The first-sight bound (`first_sight` in bounds.json; `onecard fit --strict` decides on it): the same rule on the
held-out splits' rows as each split's one scoring recorded them, every job kind pooled: how far the planner missed
jobs from sources it had never seen (benchmarks/fit_bound_backtest.py: fitted on the splits before each split, it
covered 91 % of the next splits' rows where the default bound of the day covered 65 %; heldout6, declared to test it,
32 of 32). For a harness unlike the stacks fit models; the default bound is for those it models.

`--check` recomputes and exits 1 if bounds.json differs (margins, fixed parts or case counts), without writing it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import fit_accuracy  # benchmarks/: the case loader and the scoring rule, shared

from onecard.core.gpus import lookup
from onecard.fit import bound, llm_infer
from onecard.fit.bound import BOUNDS_FILE
from onecard.fit.job import FitJob
from onecard.fit.plan import Resolved, resolve_arch, resolve_card

MIN_MARGIN, FEW_MARGIN, FEW_CASES, FEW_SOURCES = 0.05, 0.15, 5, 20
# the bound is made lowest here: a 12 GB card's budget, what CUDA can allocate on an RTX 4070 Ti less the job's margin
REFERENCE_GIB = round(lookup("rtx-4070-ti").usable_gib - FitJob(model="x").margin_gib, 2)
COVERAGE = 0.95  # issue 13's target for the bound on cases it has not seen
# The held-out splits whose cases the default bounds are fitted on (the first-sight bound reads every record). Kept
# at heldout7 after heldout8's scoring (2026-12-07, stop 29): refitted with heldout8 (`--all` prints it) the
# LLM-training bound would be +5% + 6.95 GiB on every fine-tune, set by two 2023 alpaca-lora-era 8-bit LoRA readings
# (bitsandbytes 0.37, a desktop monitor's "17 gb taken" and "about 18G"), which the planner misses by 22-44% and the
# first-sight bound (`--strict`) covers; the guide's 8B QLoRA would read "may not fit" on any 12 GB card. The bound
# shipped stays the one heldout8 tested; disclosed in RESULTS.
SHIPPED_THROUGH = "heldout7"
KINDS = ("llm-infer", "llm-train", "tinylm", "diffusion-infer", "diffusion-train", "yolo-infer", "yolo-train",
         "whisper-infer", "whisper-train")


def _kind_and_group(resolved: Resolved, job: FitJob) -> tuple[str, str]:
    """A job's kind and mechanism group, as the planner keeps its margin (estimates nothing)."""
    kind = resolved.kind(job)
    runtime = llm_infer.runtime_of(resolved.arch, job) if kind == "llm-infer" else None
    return kind, bound.group_of(kind, resolved.arch, job, runtime)


Row = tuple[str, float, float, str]  # case id, predicted GiB, measured GiB (the same kind of figure), its source


def source_of(case: dict[str, Any]) -> str:
    """The unit a case is one measurement of: its public case file (one source: a README table, an issue, a
    notebook), or for measured.md's figures (benchmarks/fit_cases/*.yaml) the table row its id names (E48-...)."""
    path = Path(case["file"])
    if path.parent != fit_accuracy.CASES:
        return f"{path.parent.name}/{path.stem}"
    return case["id"].split("-", 1)[0]


def fitted_splits(every: bool = False) -> list[str]:
    """The spent held-out splits the default bounds are fitted on: through SHIPPED_THROUGH, or every one."""
    names = list(fit_accuracy.HELDOUT_SPLITS)
    last = len(names) if every else names.index(SHIPPED_THROUGH) + 1
    return [split for split in fit_accuracy.spent() if names.index(split) < last]


def errors(every: bool = False) -> tuple[dict[str, list[Row]], dict[str, list[Row]]]:
    """(case id, predicted, measured) of every scored whole-peak case of the development set and of the held-out
    splits already scored (through SHIPPED_THROUGH unless `every`), planned now, by job kind and by mechanism
    group."""
    by_kind: dict[str, list[Row]] = defaultdict(list)
    by_group: dict[str, list[Row]] = defaultdict(list)
    spent = [fit_accuracy.HELDOUT_SPLITS[split] for split in fitted_splits(every)]
    for case in fit_accuracy.load(fit_accuracy.DEV + spent):
        if not fit_accuracy.scored(case) or case["kind"].startswith("part:"):
            continue
        job = FitJob(**case["job"] | {"calibration": False})
        resolved = resolve_arch(job.model)
        card = resolve_card(job)
        predicted = fit_accuracy.predicted(resolved.estimate(job, card), case["kind"], card)
        kind, group = _kind_and_group(resolved, job)
        by_kind[kind].append((case["id"], predicted, case["measured_gib"], source_of(case)))
        by_group[group].append(by_kind[kind][-1])
    return by_kind, by_group


def _up(x: float, step: float = 0.005) -> float:
    return math.ceil(round(x / step, 6)) * step


def fit_bound(rows: list[Row], floor: float) -> dict[str, Any]:
    """The bound upper = predicted x (1 + margin) + abs_gib that covers (is at or above the measured figure of) at
    least COVERAGE of the rows' weight, each source weighing 1 however many cases it has (a case weighs 1 / its
    source's cases: the sources, not the rows, are the independent measurements, and a new job is like a new source),
    and is lowest at REFERENCE_GIB, with margin >= floor and abs_gib >= 0: its optimum lies at the floor, at a row's
    own relative error, or where two rows' constraints cross."""
    per_source = Counter(src for *_, src in rows)
    allowed = (1 - COVERAGE) * len(per_source)  # the weight a bound may leave above it
    worst_id, p_w, m_w, _ = max(rows, key=lambda r: r[2] / r[1])
    candidates = {floor} | {m / p - 1 for _, p, m, _ in rows if m / p - 1 > floor}
    for i, (_, p1, m1, _) in enumerate(rows):
        for _, p2, m2, _ in rows[i + 1:]:
            if abs(p1 - p2) > 1e-9 and (r := (m1 - m2) / (p1 - p2) - 1) > floor:
                candidates.add(r)

    def needed(r: float) -> float:
        left = 0.0
        for residual, src in sorted(((m - p * (1 + r), src) for _, p, m, src in rows), reverse=True):
            left += 1 / per_source[src]
            if left > allowed + 1e-9:
                return max(0.0, residual)
        return 0.0

    margin = round(_up(min(sorted(candidates), key=lambda r: REFERENCE_GIB * r + needed(r))), 4)
    abs_gib = round(_up(needed(margin), 0.01), 2)
    slack = {cid: p * (1 + margin) + abs_gib - m for cid, p, m, _ in rows}
    return {"margin": margin, "abs_gib": abs_gib, "cases": len(rows), "sources": len(per_source),
            "binding": [cid for cid, p, *_ in rows if 0 <= slack[cid] < p * 0.005 + 0.01],  # within rounding
            "uncovered": [cid for cid in slack if slack[cid] < 0], "worst_case": worst_id,
            "worst_under": round(m_w / p_w - 1, 4),
            "median_abs_error": round(statistics.median(abs(p / m - 1) for _, p, m, _ in rows), 4)}


def first_sight() -> dict[str, list[dict[str, Any]]]:
    """Each scored held-out split's scored whole-peak rows as its one scoring recorded them (the planner of that
    day: its first sight of those sources), with `src`, the case file they come from."""
    splits: dict[str, list[dict[str, Any]]] = {}
    for split in fit_accuracy.spent():
        files = {case["id"]: Path(case["file"]).stem
                 for case in fit_accuracy.load([fit_accuracy.HELDOUT_SPLITS[split]])}
        splits[split] = [row | {"src": f"{split}/{files.get(row['id'], row['id'])}"}
                         for row in fit_accuracy.recorded(split) or []
                         if row["scored"] and not row["kind"].startswith("part:")]
    return splits


def rows_of(rows: list[dict[str, Any]]) -> list[Row]:
    """first_sight()'s rows as fit_bound takes them."""
    return [(r["id"], r["predicted_gib"], r["measured_gib"], r["src"]) for r in rows]


def margins(by_kind: dict[str, list[Row]], by_group: dict[str, list[Row]] | None = None,
            first: list[Row] | None = None) -> dict[str, Any]:
    """The bounds.json content (without the date) for the cases by kind and by mechanism group, and the first-sight
    bound from the held-out records' rows (`first`)."""
    kinds: dict[str, Any] = {}
    for kind in sorted(by_kind, key=lambda k: KINDS.index(k) if k in KINDS else len(KINDS)):
        rows = by_kind[kind]
        floor = MIN_MARGIN if len(rows) >= FEW_CASES else FEW_MARGIN
        fitted = fit_bound(rows, floor)
        kinds[kind] = fitted | {"rule": (
            f"covers {COVERAGE:.0%} of its {len(rows)} scored cases from {fitted['sources']} sources (each weighs "
            f"1), lowest at {REFERENCE_GIB:g} GiB"
            + ("" if len(rows) >= FEW_CASES else f"; margin at least {FEW_MARGIN:.0%} under {FEW_CASES} cases"))}
    default = {"margin": max([FEW_MARGIN, *(k["margin"] for k in kinds.values())]),
               "abs_gib": max([0.0, *(k["abs_gib"] for k in kinds.values())])}
    for kind in KINDS:
        if kind in kinds:
            continue
        family = "llm" if kind == "tinylm" else kind.split("-")[0]
        kin = [k for k in kinds if ("llm" if k == "tinylm" else k.split("-")[0]) == family and kinds[k]["cases"]]
        source = f"its family's {', '.join(kin)}" if kin else "all kinds"
        widest = {"margin": max([FEW_MARGIN, *(kinds[k]["margin"] for k in kin)]),
                  "abs_gib": max([0.0, *(kinds[k]["abs_gib"] for k in kin)])} if kin else dict(default)
        kinds[kind] = widest | {"cases": 0, "rule": f"no scored case: the widest of {source} (margin at least "
                                f"{FEW_MARGIN:.0%})", "sources": 0, "binding": [], "uncovered": [],
                                "worst_case": None, "worst_under": None, "median_abs_error": None}
    groups: dict[str, Any] = {}
    for group, rows in sorted((by_group or {}).items()):
        kind = group.split("/")[0]
        if "/" not in group or len(rows) < FEW_CASES or len({src for *_, src in rows}) < FEW_SOURCES:
            continue  # one group, or too few cases or sources of its own: the kind's bound
        fitted = fit_bound(rows, MIN_MARGIN)
        groups[group] = fitted | {
            "rule": (f"covers {COVERAGE:.0%} of its group's {len(rows)} scored cases from {fitted['sources']} "
                     f"sources, lowest at {REFERENCE_GIB:g} GiB"),
            "kind_margin": kinds[kind]["margin"], "kind_abs_gib": kinds[kind]["abs_gib"]}
    strict = None
    if first:
        fitted = fit_bound(first, MIN_MARGIN)
        strict = fitted | {"rule": (
            f"how far the planner missed jobs it had never seen: covers {COVERAGE:.0%} of {fitted['cases']} held-out "
            f"peaks as first scored, from {fitted['sources']} sources (every kind pooled, each weighs 1), lowest at "
            f"{REFERENCE_GIB:g} GiB")}
    return {"written_by": "python benchmarks/fit_bounds.py",
            "cases": "development (benchmarks/fit_cases/*.yaml and benchmarks/fit_cases/public/dev/*.yaml, planned "
                     "now) and the held-out splits already scored through SHIPPED_THROUGH, planned now as "
                     f"development data ({', '.join(fitted_splits())}"
                     "), scored as benchmarks/fit_accuracy.py scores them; the first-sight bound reads every "
                     "split's record",
            "rule": ("upper bound = predicted x (1 + margin) + abs_gib, at or above the measured figure of "
                     f"{COVERAGE:.0%} of the kind's scored whole-peak cases, each source (a public case file, a "
                     "measured.md row) weighing 1, with (margin, abs_gib) chosen to make it lowest at "
                     f"{REFERENCE_GIB:g} GiB (a 12 GB card's budget, where `fits` matters most); margin at least "
                     f"{MIN_MARGIN:.0%} ({FEW_MARGIN:.0%} under {FEW_CASES} cases), rounded up to 0.5%, abs_gib up "
                     "to 0.01 GiB"),
            "kinds": kinds,
            "groups": groups,
            "group_rule": (f"a mechanism group (onecard.fit.bound.group_of) with at least {FEW_CASES} scored cases "
                           f"from {FEW_SOURCES} sources of its own gets the bound fitted on them alone (margin at "
                           f"least {MIN_MARGIN:.0%}); any other job takes its kind's, fitted on all its groups"),
            "default": default | {"rule": "the widest of any kind: for a kind not listed"},
            "first_sight": strict}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if bounds.json is out of date; write nothing")
    parser.add_argument("--all", action="store_true",
                        help="fit on every spent split, not only through SHIPPED_THROUGH; print, write nothing")
    args = parser.parse_args()
    by_kind, by_group = errors(args.all)
    data = margins(by_kind, by_group, rows_of([row for rows in first_sight().values() for row in rows]))
    print(f"{'kind / group':28} {'cases':>5} {'worst under':>11} {'median |err|':>12} {'margin':>7} {'+ GiB':>6}"
          "  binding cases")
    for name, k in [*data["kinds"].items(), *data["groups"].items()]:
        under = "" if k["worst_under"] is None else f"{k['worst_under']:+11.1%}"
        median = "" if k["median_abs_error"] is None else f"{k['median_abs_error']:12.1%}"
        left = f"; not covered: {', '.join(k['uncovered'])}" if k["uncovered"] else ""
        print(f"{name:28} {k['cases']:5d} {under:>11} {median:>12} {k['margin']:7.1%} {k['abs_gib']:6.2f}  "
              f"{', '.join(k['binding']) or k['rule']}{left}")
    print(f"{'(other)':28} {0:5d} {'':>11} {'':>12} {data['default']['margin']:7.1%} "
          f"{data['default']['abs_gib']:6.2f}  {data['default']['rule']}")
    if (strict := data["first_sight"]) is not None:
        print(f"{'first sight (--strict)':28} {strict['cases']:5d} {strict['worst_under']:+11.1%} "
              f"{strict['median_abs_error']:12.1%} {strict['margin']:7.1%} {strict['abs_gib']:6.2f}  {strict['rule']}")
    covered = total = 0
    for group, rows in by_group.items():  # each case under the bound the planner now gives its job
        entry = data["groups"].get(group) or data["kinds"][group.split("/")[0]]
        covered += sum(p * (1 + entry["margin"]) + entry["abs_gib"] >= m for _, p, m, _ in rows)
        total += len(rows)
    print(f"\nin-sample: today's bounds cover {covered} of the {total} scored whole-peak cases they were fitted on "
          f"({covered / total:.0%}); a split scored before it was fitted is the test")
    old = json.loads(BOUNDS_FILE.read_text(encoding="utf-8")) if BOUNDS_FILE.exists() else {}
    same = all({k: (v["margin"], v.get("abs_gib"), v["cases"]) for k, v in old.get(part, {}).items()} == {
        k: (v["margin"], v["abs_gib"], v["cases"]) for k, v in data[part].items()} for part in ("kinds", "groups"))
    same = same and ({k: old.get("first_sight", {}).get(k) for k in ("margin", "abs_gib", "cases")}
                     == {k: (data["first_sight"] or {}).get(k) for k in ("margin", "abs_gib", "cases")})
    if args.all:
        print(f"(fitted on every spent split: {', '.join(fitted_splits(True))}; not written, the shipped bounds are "
              f"fitted through {SHIPPED_THROUGH})")
        return 0
    if args.check:
        print(f"{BOUNDS_FILE}: {'up to date' if same else 'OUT OF DATE: run python benchmarks/fit_bounds.py'}")
        return 0 if same else 1
    data["date"] = dt.date.today().isoformat() if not same else old.get("date", dt.date.today().isoformat())
    BOUNDS_FILE.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {BOUNDS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

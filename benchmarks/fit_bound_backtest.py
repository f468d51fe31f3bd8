"""What a safe bound that covers 95 % of jobs the planner has never seen would cost: a rolling-origin backtest of
bound rules on the held-out splits' first scorings.

    python benchmarks/fit_bound_backtest.py

Each held-out split was scored once, in order (heldout, heldout2, ... : benchmarks/fit_accuracy.py's
HELDOUT_SPLITS), by the planner of that day; its record (public/<split>_scored.json) holds the planner's first-sight
figure for every case: what a user whose job is like no case before would have been told. For each split after the
first, a rule is fitted on what was known before that split was scored and tested on the split's record: the share
of its scored whole-peak cases whose bound (the recorded predicted figure x (1 + margin) + abs_gib) is at or above
the measured figure. Rules:

  shipped           the bound each record holds: the bound of that day (benchmarks/fit_bounds.py's rule then,
                    fitted on development data, which the planner had been fixed on);
  first-sight       fit_bounds.fit_bound (the same rule: 95 % of the weight, each source weighing 1, lowest at a
                    12 GB card's budget) on the earlier splits' first-sight rows, all job kinds pooled;
  first-sight/kind  the same per job kind, pooled for a kind with fewer than FEW_CASES earlier rows.

Its cost is the largest point estimate a rule, fitted on every record, still calls `fits` on a 12 GB and a 16 GB
card (their budgets: what CUDA can allocate less the job's margin, as `fit` plans). Reads only records of splits
already scored; plans nothing.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from typing import Any

import fit_bounds  # benchmarks/: the bound's rule

from onecard.core.gpus import lookup
from onecard.fit.job import FitJob

BUDGETS = {"12 GB (RTX 4070 Ti)": "rtx-4070-ti", "16 GB (RTX 4070 Ti SUPER)": "rtx-4070-ti-super"}


def fitted(train: list[dict[str, Any]], per_kind: bool) -> dict[str, tuple[float, float]]:
    """(margin, abs_gib) per job kind ("*": pooled) fitted on first-sight rows."""
    pooled = fit_bounds.fit_bound(fit_bounds.rows_of(train), fit_bounds.MIN_MARGIN)
    rules = {"*": (pooled["margin"], pooled["abs_gib"])}
    if per_kind:
        by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in train:
            by_kind[row["job_kind"]].append(row)
        for kind, rows in by_kind.items():
            if len(rows) >= fit_bounds.FEW_CASES:
                one = fit_bounds.fit_bound(fit_bounds.rows_of(rows), fit_bounds.MIN_MARGIN)
                rules[kind] = (one["margin"], one["abs_gib"])
    return rules


def covers(rules: dict[str, tuple[float, float]], row: dict[str, Any]) -> bool:
    margin, abs_gib = rules.get(row["job_kind"], rules["*"])
    return bool(row["predicted_gib"] * (1 + margin) + abs_gib >= row["measured_gib"])


def backtest(splits: dict[str, list[dict[str, Any]]]) -> dict[str, list[tuple[int, int]]]:
    """(covered, cases) of each split after the first, per rule: "shipped" (the bound its record holds), and
    "first-sight" / "first-sight/kind" fitted on the rows of the splits before it (in `splits`' order)."""
    names = list(splits)
    result: dict[str, list[tuple[int, int]]] = {"shipped": [], "first-sight": [], "first-sight/kind": []}
    for i, name in enumerate(names[1:], start=1):
        rows = splits[name]
        bounded = [r for r in rows if r["upper_gib"] is not None]
        result["shipped"].append((sum(r["upper_gib"] >= r["measured_gib"] for r in bounded), len(bounded)))
        earlier = [r for before in names[:i] for r in splits[before]]
        for label, per_kind in (("first-sight", False), ("first-sight/kind", True)):
            rules = fitted(earlier, per_kind)
            result[label].append((sum(covers(rules, r) for r in rows), len(rows)))
    return result


def main() -> int:
    splits = fit_bounds.first_sight()
    names = list(splits)
    if len(names) < 2:
        print("fewer than two scored held-out splits: nothing to backtest")
        return 1
    print("coverage of each split's first-sight rows by a bound fitted before it was scored\n")
    print(f"{'rule':18}" + "".join(f"{name:>16}" for name in names[1:]) + f"{'all':>16}")
    for label, cells in backtest(splits).items():
        share = sum(c for c, _ in cells) / max(1, sum(n for _, n in cells))
        print(f"{label:18}" + "".join(f"{c:>9d} of {n:<3d}" for c, n in cells) + f"{share:>16.0%}")
    every = [r for name in names for r in splits[name]]
    print(f"\nfitted on every record ({len(every)} first-sight cases, {len({r['src'] for r in every})} sources): "
          "margin, fixed part, and the largest point estimate it still calls `fits`")
    margin_gib = FitJob(model="x").margin_gib
    for label, per_kind in (("first-sight", False), ("first-sight/kind", True)):
        for kind, (margin, abs_gib) in sorted(fitted(every, per_kind).items()):
            if per_kind and kind == "*":
                kind = "(other kinds)"  # a kind with fewer than FEW_CASES rows takes the pooled bound
            fits = "  ".join(f"{card}: {(lookup(key).usable_gib - margin_gib - abs_gib) / (1 + margin):5.2f} GiB"
                             for card, key in BUDGETS.items())
            print(f"  {label:18} {kind:16} +{margin:6.1%} +{abs_gib:5.2f} GiB   {fits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does feeding real measurements back improve the planner on a card? `onecard fit calibrate` on public measurements.

    python benchmarks/fit_calibration.py [--json] [--spent]

The development cases (benchmarks/fit_cases/*.yaml and public/dev) stand in for a user's own runs (`--spent`: the
cases of the held-out splits that were already scored once and recorded, jobs the planner was not built on, instead;
a split without its record is never read, and nothing here is a held-out score):
each scored whole-peak case (allocated, reserved or process) is appended as an observation of its card, in a
throw-away ONECARD_HOME, exactly as `onecard fit --measure` or a `tune` run on a GPU appends one. Then
`onecard.fit.calibrate.calibrate` fits its per-card, per-stack corrections (the median of measured / predicted, from 3
observations up; the job kind's on the card for a stack with fewer) and this prints, per stack, the error
before and with the correction, leave-one-out (each observation is predicted with the correction the others would
give it, so a group cannot score itself).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fit_accuracy import DEV, HELDOUT_SPLITS, load, scored  # noqa: E402
from fit_accuracy import spent as spent_splits  # noqa: E402

from onecard.fit.job import FitJob  # noqa: E402

WHOLE = ("allocated", "reserved", "process")


def run(spent: bool = False) -> dict[str, Any]:
    folders = [HELDOUT_SPLITS[split] for split in spent_splits()] if spent else DEV
    with tempfile.TemporaryDirectory() as home:
        os.environ["ONECARD_HOME"] = home
        from onecard.fit import calibrate, observations
        from onecard.fit.plan import resolve_card

        for case in load(folders):
            if not scored(case) or case["kind"] not in (*WHOLE, "device"):
                continue
            job = FitJob(**case["job"], calibration=False)
            card = resolve_card(job)
            if card is None:
                continue
            if case["kind"] == "device":  # a device-wide NVML reading less what the driver keeps: the process's
                observations.observe(job, "process", case["measured_gib"] - card.driver_reserved_gib,
                                     source=case["id"], card=card)
            else:
                observations.observe(job, case["kind"], case["measured_gib"], source=case["id"], card=card)
        return calibrate.calibrate(save=False).to_json()


def within_10(errors: list[float]) -> int:
    """How many observations a rule leaves within 10% of their measured figure."""
    return sum(abs(e) <= 0.1 for e in errors)


def compare(result: dict[str, Any]) -> None:
    """The leave-one-out error of the same observations under two simpler rules and the one calibrate fits."""
    from onecard.fit.calibrate import fit_groups

    rows = [(g["card"], g["job_kind"], g["kind"], r) for g in result["groups"] for r in g["ratios"]]
    rules = {"per card and job kind": [(c, k, k, r) for c, k, _, r in rows],
             "per card and stack": [(c, s, s, r) for c, _, s, r in rows],
             "per stack, else its kind (calibrate)": rows}
    print(f"{'rule':38} {'median |err| before':>20} {'after':>7} {'within 10% before':>18} {'after':>6}")
    for label, rule_rows in rules.items():
        groups = fit_groups(rule_rows)
        before = [e for g in groups for e in g.before]
        after = [e for g in groups for e in g.after]
        print(f"{label:38} {statistics.median(map(abs, before)):20.1%} {statistics.median(map(abs, after)):7.1%} "
              f"{within_10(before):18d} {within_10(after):6d}")
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print calibrate's JSON")
    parser.add_argument("--compare", action="store_true",
                        help="also the same observations corrected per job kind only, and per stack only")
    parser.add_argument("--spent", action="store_true",
                        help="the recorded held-out splits' cases as the observations, instead of the development set")
    args = parser.parse_args()
    result = run(args.spent)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'card':18} {'kind / stack':30} {'obs':>4} {'scale':>15} {'median |err| before':>20} {'after':>7} "
          f"{'worst under before':>19} {'after':>7}")
    for g in result["groups"]:
        scale = (f"{g['scale']:.3f}" if g["scale"] is not None else
                 f"{g['kind_scale']:.3f} (kind)" if g["kind_scale"] is not None else "-")
        print(f"{g['card']:18} {g['kind']:30} {g['observations']:4d} {scale:>15} {g['before_median_abs_error']:20.1%} "
              f"{g['after_median_abs_error']:7.1%} {g['before_worst_under']:+19.1%} {g['after_worst_under']:+7.1%}")
    o = result["overall"]
    if args.compare:
        compare(result)
    before = [e for g in result["groups"] for e in g["before"]]
    after = [e for g in result["groups"] for e in g["after"]]
    print(f"\nall {len(before)} observations: median |error| "
          f"{o['before_median_abs_error']:.1%} -> {o['after_median_abs_error']:.1%} (leave-one-out), within 10% "
          f"{within_10(before)} -> {within_10(after)}, worst "
          f"under-prediction {o['before_worst_under']:+.1%} -> {o['after_worst_under']:+.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

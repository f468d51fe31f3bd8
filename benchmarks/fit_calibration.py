"""Does feeding real measurements back improve the planner on a card? `onecard fit calibrate` on public measurements.

    python benchmarks/fit_calibration.py [--json] [--spent]

The development cases (benchmarks/fit_cases/*.yaml and public/dev) stand in for a user's own runs (`--spent`: the
cases of the held-out splits that were already scored once and recorded, jobs the planner was not built on, instead;
a split without its record is never read, and nothing here is a held-out score):
each scored whole-peak case (allocated, reserved or process) is appended as an observation of its card, in a
throw-away ONECARD_HOME, exactly as `onecard fit --measure` or a `tune` run on a GPU appends one. Then
`onecard.fit.calibrate.calibrate` fits its per-card, per-job-kind corrections (the median of measured / predicted,
from 3 observations up) and this prints, per group, the error before and with the correction, leave-one-out (each
observation is predicted with the correction fitted on the others of its group, so a group cannot score itself).
"""

from __future__ import annotations

import argparse
import json
import os
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print calibrate's JSON")
    parser.add_argument("--spent", action="store_true",
                        help="the recorded held-out splits' cases as the observations, instead of the development set")
    args = parser.parse_args()
    result = run(args.spent)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'card':22} {'job kind':15} {'obs':>4} {'scale':>6} {'median |err| before':>20} {'after':>7} "
          f"{'worst under before':>19} {'after':>7}")
    for g in result["groups"]:
        scale = "-" if g["scale"] is None else f"{g['scale']:.3f}"
        print(f"{g['card']:22} {g['kind']:15} {g['observations']:4d} {scale:>6} {g['before_median_abs_error']:20.1%} "
              f"{g['after_median_abs_error']:7.1%} {g['before_worst_under']:+19.1%} {g['after_worst_under']:+7.1%}")
    o = result["overall"]
    print(f"\nall {sum(g['observations'] for g in result['groups'])} observations: median |error| "
          f"{o['before_median_abs_error']:.1%} -> {o['after_median_abs_error']:.1%} (leave-one-out), worst "
          f"under-prediction {o['before_worst_under']:+.1%} -> {o['after_worst_under']:+.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`onecard fit`: predict peak GPU memory of a job on a card, and find the settings that fit."""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict
from typing import TYPE_CHECKING

from onecard.cli.common import emit, job_flags, resolve_config, trackers

if TYPE_CHECKING:
    from rich.console import Console

    from onecard.fit.job import FitJob

CALIBRATE = "calibrate"  # `onecard fit calibrate`: no model is named so (a model path would be ./calibrate)


def fit_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.fit.job import FitJob
    from onecard.fit.observations import FIGURES

    add_config_flags(p, FitJob, positional=("model",))
    p.usage = "onecard fit [MODEL] [flags]\n       onecard fit calibrate [--json]"
    p.epilog = ("onecard fit calibrate: fit per-card, per-kind corrections from this machine's measured peaks "
                "(`onecard fit MODEL --measure` runs, the capabilities' runs on a GPU and peaks you report with "
                "`onecard fit MODEL ... --observed GIB` add them), show how much they "
                "move the error on them (leave-one-out), and save them; `onecard fit` uses them from then on "
                "(--no-calibration plans without them).")
    p.add_argument("--list", action="store_true", help="list the catalog's model names by family, and stop")
    p.add_argument("--solve", action="store_true", help="search the settings that fit the card, ranked")
    p.add_argument("--top", type=_positive, default=10, help="with --solve: how many plans to list (default: 10)")
    p.add_argument("--trace", action="store_true",
                   help="also count the peak on fake tensors, no GPU needed (pip install 'onecard[fit]')")
    p.add_argument("--measure", action="store_true",
                   help="run the job for a few steps on this machine's GPU and print predicted vs measured (a run)")
    p.add_argument("--observed", type=_gib, metavar="GIB",
                   help="a peak you measured for this job with other tools, in GiB, on the card --gpu/--vram names "
                        "(else this machine's): kept for `onecard fit calibrate` beside the planner's figure")
    p.add_argument("--figure", choices=FIGURES, default=None,
                   help="with --observed: what it counts: process (the job's own line in nvidia-smi, default), "
                        "reserved (torch.cuda.max_memory_reserved), allocated (torch.cuda.max_memory_allocated)")
    job_flags(p)


def _gib(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a peak in GiB above 0, got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def fit(args: argparse.Namespace) -> int:
    from onecard.fit import report
    from onecard.fit.job import FitJob
    from onecard.fit.plan import catalog_names
    from onecard.fit.run import advise, measure_run

    if getattr(args, "model", None) == CALIBRATE:
        return calibrate(args)
    if args.list:
        def show_names(names: dict[str, list[str]], console: Console) -> None:
            for family, keys in names.items():
                console.print(f"[bold]{family}[/]: {', '.join(keys)}")

        emit(args, catalog_names(), show_names)
        return 0
    job = resolve_config(args, FitJob)
    _check_modes(args)
    if args.observed is not None:
        return observed(args, job)
    if args.measure:
        predicted, measured, run_id = measure_run(job, runs_root=args.runs_dir, report_to=trackers(args))
        rows = [(name, round(p, 3), None if m is None else round(m, 3)) for name, p, m in measured.versus(
            predicted.estimate, predicted.card)]

        def show_measured(_: object, console: Console) -> None:
            report.render_measured(predicted, measured, console)
            console.print(f"recorded as run [bold]{run_id}[/]; its peak is kept for `onecard fit calibrate`")

        emit(args, {"run_id": run_id, "device": measured.device, "predicted_vs_measured": rows,
                    "notes": measured.notes}, show_measured)
        return 0
    result = advise(job, fixed=job.model_fields_set, solutions=args.solve, top=args.top, traced=args.trace)

    def show(_: object, console: Console) -> None:
        report.render(result.plan, console, result.fixes)
        if result.traced is not None:
            report.render_trace(result.plan.estimate, result.traced, console)
        if result.solutions is not None:
            report.render_solutions(result.solutions, console, job)

    emit(args, result.to_json(), show)
    return 0


def _check_modes(args: argparse.Namespace) -> None:
    """--measure and --observed take the job as given: neither combines with --solve or --trace, nor with the other."""
    from onecard.core.errors import ConfigError

    if args.figure is not None and args.observed is None:
        raise ConfigError(f"--figure {args.figure} says what an --observed peak counts, and no --observed is given",
                          "add --observed GIB, the peak you measured, or drop --figure")
    for mode, fix in (("measure", "run `onecard fit ... --solve` first, then --measure the plan it chose"),
                      ("observed", "report the peak of the job as it ran, without --solve or --trace")):
        if getattr(args, mode) in (None, False):
            continue
        others = [f"--{o}" for o in ("solve", "trace", "measure") if o != mode and getattr(args, o)]
        if others:
            raise ConfigError(f"--{mode} takes the job as given; it does not combine with {' and '.join(others)}", fix)


def observed(args: argparse.Namespace, job: FitJob) -> int:
    """`onecard fit MODEL ... --observed GIB`: store a peak the user measured, and say where its correction stands."""
    from onecard.fit.calibrate import MIN_OBSERVATIONS
    from onecard.fit.observations import report

    got = report(job, args.figure or "process", args.observed)
    obs = got.observation

    def show(_: object, console: Console) -> None:
        console.print(f"observed {obs.measured_gib:.2f} GiB ({obs.figure}) for {job.model} on the {got.card_name}; "
                      f"the planner predicts {obs.predicted_gib:.2f} ({got.error:+.1%}, uncalibrated)", highlight=False)
        left = MIN_OBSERVATIONS - got.in_group
        console.print(f"kept in {got.path}: {got.in_group} observation{'s' if got.in_group != 1 else ''} of "
                      f"{obs.group} on this card; "
                      + (f"{left} more and `onecard fit calibrate` fits its own correction" if left > 0 else
                         "run `onecard fit calibrate` to fit its correction"), highlight=False)

    emit(args, {"observation": asdict(obs), "card_name": got.card_name, "error": round(got.error, 4),
                "in_group": got.in_group, "min_observations": MIN_OBSERVATIONS, "observations_file": got.path}, show)
    return 0


def calibrate(args: argparse.Namespace) -> int:
    """`onecard fit calibrate`: it takes no job flags; --json prints the result as JSON."""
    from onecard.core.config import explicit_fields
    from onecard.core.errors import ConfigError
    from onecard.fit import report
    from onecard.fit.calibrate import calibrate as fit_corrections
    from onecard.fit.job import FitJob

    given = sorted(set(explicit_fields(FitJob, args)) - {"model"})
    extra = given + [flag for flag in ("solve", "trace", "measure", "observed", "figure") if getattr(args, flag)]
    if extra or args.config:
        flags = ", ".join("--" + name.replace("_", "-") for name in extra) or "--config"
        raise ConfigError(f"`onecard fit calibrate` fits corrections from every observation; it takes no job flags "
                          f"({flags} given)", "run `onecard fit calibrate` alone, then `onecard fit MODEL ...` to plan")
    result = fit_corrections()
    emit(args, result.to_json(), lambda _, console: report.render_calibration(result, console))
    return 0

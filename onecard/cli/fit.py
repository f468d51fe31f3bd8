"""`onecard fit`: predict peak GPU memory of a job on a card, and find the settings that fit."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from onecard.cli.common import emit, job_flags, resolve_config, trackers

if TYPE_CHECKING:
    from rich.console import Console

CALIBRATE = "calibrate"  # `onecard fit calibrate`: no model is named so (a model path would be ./calibrate)


def fit_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.fit.job import FitJob

    add_config_flags(p, FitJob, positional=("model",))
    p.usage = "onecard fit [MODEL] [flags]\n       onecard fit calibrate [--json]"
    p.epilog = ("onecard fit calibrate: fit per-card, per-kind corrections from this machine's measured peaks "
                "(`onecard fit MODEL --measure` runs and the capabilities' runs on a GPU add them), show how much they "
                "move the error on them (leave-one-out), and save them; `onecard fit` uses them from then on "
                "(--no-calibration plans without them).")
    p.add_argument("--list", action="store_true", help="list the catalog's model names by family, and stop")
    p.add_argument("--solve", action="store_true", help="search the settings that fit the card, ranked")
    p.add_argument("--top", type=_positive, default=10, help="with --solve: how many plans to list (default: 10)")
    p.add_argument("--trace", action="store_true",
                   help="also count the peak on fake tensors, no GPU needed (pip install 'onecard[fit]')")
    p.add_argument("--measure", action="store_true",
                   help="run the job for a few steps on this machine's GPU and print predicted vs measured (a run)")
    job_flags(p)


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
    if args.measure and (args.solve or args.trace):
        from onecard.core.errors import ConfigError

        raise ConfigError("--measure runs the job as given; it does not combine with "
                          f"{' and '.join(f for f, on in (('--solve', args.solve), ('--trace', args.trace)) if on)}",
                          "run `onecard fit ... --solve` first, then --measure the plan it chose")
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


def calibrate(args: argparse.Namespace) -> int:
    """`onecard fit calibrate`: it takes no job flags; --json prints the result as JSON."""
    from onecard.core.config import explicit_fields
    from onecard.core.errors import ConfigError
    from onecard.fit import report
    from onecard.fit.calibrate import calibrate as fit_corrections
    from onecard.fit.job import FitJob

    given = sorted(set(explicit_fields(FitJob, args)) - {"model"})
    extra = given + [flag for flag in ("solve", "trace", "measure") if getattr(args, flag)]
    if extra or args.config:
        flags = ", ".join("--" + name.replace("_", "-") for name in extra) or "--config"
        raise ConfigError(f"`onecard fit calibrate` fits corrections from every observation; it takes no job flags "
                          f"({flags} given)", "run `onecard fit calibrate` alone, then `onecard fit MODEL ...` to plan")
    result = fit_corrections()
    emit(args, result.to_json(), lambda _, console: report.render_calibration(result, console))
    return 0

"""`onecard fit`: predict peak GPU memory of a job on a card, and find the settings that fit."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from onecard.cli.common import emit, job_flags, resolve_config, trackers

if TYPE_CHECKING:
    from rich.console import Console


def fit_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.fit.job import FitJob

    add_config_flags(p, FitJob, positional=("model",))
    p.add_argument("--solve", action="store_true", help="search the settings that fit the card, ranked")
    p.add_argument("--top", type=int, default=10, help="with --solve: how many plans to list (default: 10)")
    p.add_argument("--trace", action="store_true",
                   help="also count the peak on fake tensors, no GPU needed (pip install 'onecard[fit]')")
    p.add_argument("--measure", action="store_true",
                   help="run the job for a few steps on this machine's GPU and print predicted vs measured (a run)")
    job_flags(p)


def fit(args: argparse.Namespace) -> int:
    from onecard.fit import report
    from onecard.fit.job import FitJob
    from onecard.fit.run import advise, measure_run

    job = resolve_config(args, FitJob)
    if args.measure:
        predicted, measured, run_id = measure_run(job, runs_root=args.runs_dir, report_to=trackers(args))
        rows = [(name, round(p, 3), None if m is None else round(m, 3)) for name, p, m in measured.versus(
            predicted.estimate)]

        def show_measured(_: object, console: Console) -> None:
            report.render_measured(predicted, measured, console)
            console.print(f"recorded as run [bold]{run_id}[/]")

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

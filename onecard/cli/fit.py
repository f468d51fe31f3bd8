"""`onecard fit`: predict peak GPU memory of a job on a card, and find the settings that fit."""

from __future__ import annotations

import argparse

from onecard.cli.common import job_flags, make_console, print_json, trackers


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
    from onecard.core.config import config_from_args, dump_config
    from onecard.fit import report
    from onecard.fit.job import FitJob
    from onecard.fit.run import answer, measure_run

    job = config_from_args(FitJob, args)
    if args.print_config:
        print_json(dump_config(job))
        return 0
    if args.measure:
        predicted, measured, run_id = measure_run(job, runs_root=args.runs_dir, report_to=trackers(args))
        rows = [(name, round(p, 3), None if m is None else round(m, 3)) for name, p, m in measured.versus(
            predicted.estimate)]
        if args.json:
            print_json({"run_id": run_id, "device": measured.device, "predicted_vs_measured": rows,
                         "notes": measured.notes})
        else:
            report.render_measured(predicted, measured, make_console())
            make_console().print(f"recorded as run [bold]{run_id}[/]")
        return 0
    result = answer(job, fixed=job.model_fields_set, solve=args.solve, top=args.top, trace=args.trace)
    if args.json:
        print_json(result.to_json())
        return 0
    console = make_console()
    report.render(result.plan, console, result.fixes)
    if result.traced is not None:
        report.render_trace(result.plan.estimate, result.traced, console)
    if result.solutions is not None:
        report.render_solutions(result.solutions, console, job)
    return 0

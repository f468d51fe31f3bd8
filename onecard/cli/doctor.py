"""`onecard doctor`: what this machine can do for AI work, and what is missing."""

from __future__ import annotations

import argparse

from onecard.cli.common import job_flags, make_console, print_json, trackers


def doctor_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.core.doctor import BenchConfig

    p.add_argument("--bench", action="store_true", help="also measure matmul TFLOPS and memory bandwidth (a run)")
    p.add_argument("--gpu", metavar="CARD", help="say what this card from the catalog can run (4070ti, rtx-3060...) "
                   "instead of the detected one")
    add_config_flags(p, BenchConfig)
    job_flags(p)


def doctor(args: argparse.Namespace) -> int:
    from onecard.core import doctor
    from onecard.core.config import config_from_args, dump_config

    config = config_from_args(doctor.BenchConfig, args)
    if args.print_config:
        print_json(dump_config(config))
        return 0
    data = doctor.report()
    if args.bench:
        run = doctor.run_bench(config, args.runs_dir, trackers(args))
        data["bench"] = run.record["bench"]
        data["run_id"] = run.id
    from onecard.fit.run import can_run

    data["can_run"] = can_run(data["gpus"], args.gpu)
    if args.json:
        print_json(data)
        return 0
    console = make_console()
    doctor.render(data, console)
    if args.bench:
        doctor.render_bench(data["bench"], console)
        console.print(f"recorded as run [bold]{data['run_id']}[/] (see `onecard runs show {data['run_id']}`)")
    doctor.render_lines("What this card can run (onecard fit)", data["can_run"]["lines"], console)
    return 0

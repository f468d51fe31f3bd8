"""`onecard doctor`: what this machine can do for AI work, and what is missing."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from onecard.cli.common import emit, job_flags, resolve_config, trackers

if TYPE_CHECKING:
    from rich.console import Console


def doctor_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.core.doctor import BenchConfig

    p.add_argument("--bench", action="store_true", help="also measure matmul TFLOPS and memory bandwidth (a run)")
    p.add_argument("--gpu", metavar="CARD", help="say what this card from the catalog can run (4070ti, rtx-3060...) "
                   "instead of the detected one")
    add_config_flags(p, BenchConfig)
    job_flags(p)


def doctor(args: argparse.Namespace) -> int:
    from onecard.core.doctor import BenchConfig, report, run_bench
    from onecard.fit.run import can_run

    config = resolve_config(args, BenchConfig)
    data = report()
    if args.bench:
        bench = run_bench(config, args.runs_dir, trackers(args))
        data["bench"] = bench.record["bench"]
        data["run_id"] = bench.id
    data["can_run"] = can_run(data["gpus"], args.gpu)
    emit(args, data, _render)
    return 0


def _render(data: dict[str, Any], console: Console) -> None:
    from onecard.core.doctor import render, render_bench, render_lines

    render(data, console)
    if "bench" in data:
        render_bench(data["bench"], console)
        console.print(f"recorded as run [bold]{data['run_id']}[/] (see `onecard runs show {data['run_id']}`)")
    render_lines("What this card can run (onecard fit)", data["can_run"]["lines"], console)

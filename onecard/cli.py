"""The `onecard` command: a table of commands. Each parses its flags and calls the library; no logic lives here.

Heavy modules are imported inside the command that needs them, so `onecard --help` answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from onecard import __version__

__all__ = ["main", "COMMANDS"]


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def _job_flags(parser: argparse.ArgumentParser, json_flag: bool = True) -> None:
    """Flags every job command shares."""
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file with config keys (flags override it)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--runs-dir", metavar="DIR", help="where run records go (default: the data directory)")
    parser.add_argument(
        "--report-to", nargs="+", default=["trackio"], choices=["trackio", "wandb", "none"],
        help="metric trackers: trackio (local, default), wandb, none",
    )
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _trackers(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(t for t in args.report_to if t != "none")


# -- doctor ---------------------------------------------------------------------------------------------------------


def _doctor_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.core.doctor import BenchConfig

    p.add_argument("--bench", action="store_true", help="also measure matmul TFLOPS and memory bandwidth (a run)")
    add_config_flags(p, BenchConfig)
    _job_flags(p)


def _doctor(args: argparse.Namespace) -> int:
    from onecard.core import doctor
    from onecard.core.config import config_from_args, dump_config

    config = config_from_args(doctor.BenchConfig, args)
    if args.print_config:
        _print_json(dump_config(config))
        return 0
    data = doctor.report()
    if args.bench:
        run = doctor.run_bench(config, args.runs_dir, _trackers(args))
        data["bench"] = run.record["bench"]
        data["run_id"] = run.id
    if args.json:
        _print_json(data)
        return 0
    console = _console()
    doctor.render(data, console)
    if args.bench:
        doctor.render_bench(data["bench"], console)
        console.print(f"recorded as run [bold]{data['run_id']}[/] (see `onecard runs show {data['run_id']}`)")
    return 0


# -- runs -----------------------------------------------------------------------------------------------------------


def _runs_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="every run so far: capability, status, key metrics, when")
    ls.add_argument("--capability", help="only runs of this capability (tune, rag, doctor...)")
    ls.add_argument("--status", choices=["running", "succeeded", "failed", "interrupted"])
    ls.add_argument("--limit", type=int, default=50, help="at most this many, newest first (default: 50)")
    show = sub.add_parser("show", help="the full record of one run")
    show.add_argument("run", help="run id, unique prefix, run directory, or 'last'")
    cmp = sub.add_parser("compare", help="config and metric differences of two runs side by side")
    cmp.add_argument("a", help="first run")
    cmp.add_argument("b", help="second run")
    for s in (ls, show, cmp):
        s.add_argument("--runs-dir", metavar="DIR", help="where run records are (default: the data directory)")
        s.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _runs(args: argparse.Namespace) -> int:
    from onecard.core import runs

    console = _console()
    if args.action == "list":
        found = [
            r for r in runs.load_runs(args.runs_dir)
            if (args.capability is None or r.get("capability") == args.capability)
            and (args.status is None or r.get("status") == args.status)
        ][: args.limit]
        if args.json:
            _print_json({"runs": found})
        else:
            runs.render_list(found, console)
    elif args.action == "show":
        record = runs.find_run(args.run, args.runs_dir)
        if args.json:
            _print_json(record)
        else:
            runs.render_show(record, console)
    else:
        diff = runs.compare(runs.find_run(args.a, args.runs_dir), runs.find_run(args.b, args.runs_dir))
        if args.json:
            _print_json(diff)
        else:
            runs.render_compare(diff, console)
    return 0


# -- the table ------------------------------------------------------------------------------------------------------

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

COMMANDS: dict[str, Command] = {
    "doctor": ("what this machine can do for AI work, and what is missing", _doctor_args, _doctor),
    "runs": ("list, show and compare recorded runs", _runs_args, _runs),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the named command's flags are built (they may import its config module)."""
    parser = argparse.ArgumentParser(
        prog="onecard",
        description="Real AI projects on one consumer GPU: plan memory, run, evaluate, and record every run.",
    )
    parser.add_argument("--version", action="version", version=f"onecard {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or status lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_args, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            add_args(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `onecard` console script."""
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from onecard.core.errors import OnecardError
    from onecard.core.progress import set_quiet

    set_quiet(args.quiet)
    try:
        return COMMANDS[args.command][2](args)
    except OnecardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

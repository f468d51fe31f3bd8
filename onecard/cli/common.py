"""What the command modules share: JSON output, the rich console, and the flags every job takes."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["print_json", "make_console", "job_flags", "run_flags", "trackers"]


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def make_console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def job_flags(parser: argparse.ArgumentParser, json_flag: bool = True) -> None:
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


def trackers(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(t for t in args.report_to if t != "none")


def run_flags(parser: argparse.ArgumentParser) -> None:
    """Flags every command that reads a recorded run shares (sample, eval, bench, export...)."""
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file with config keys (flags override it)")
    parser.add_argument("--runs-dir", metavar="DIR", help="where run records are (default: the data directory)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")

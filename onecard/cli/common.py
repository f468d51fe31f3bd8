"""What the command modules share, so that a command is its flags and one call.

Flags: `job_flags` (a recorded job), `run_flags` (a command that reads a recorded run), built on `config_flag`,
`runs_dir_flag` and `json_flag`. Config: `resolve_config` (defaults < --config file < flags; --resume; --print-config).
Output: `emit` (one JSON object under --json, the human rendering otherwise) and `echo` (streamed text).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pydantic import BaseModel
    from rich.console import Console

    from onecard.core.records import Run

__all__ = [
    "config_flag", "json_flag", "runs_dir_flag", "job_flags", "run_flags", "resolve_config", "trackers", "emit", "echo",
    "recorded",
]

M = TypeVar("M", bound="BaseModel")


# -- flags ---------------------------------------------------------------------------------------------------------


def config_flag(parser: argparse.ArgumentParser, print_config: bool = True) -> None:
    """`--config FILE.yaml`, and `--print-config` unless the command only reads a recorded run."""
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file with config keys (flags override it)")
    if print_config:
        parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def json_flag(parser: argparse.ArgumentParser, help_text: str = "print one JSON object on stdout") -> None:
    parser.add_argument("--json", action="store_true", help=help_text)


def runs_dir_flag(parser: argparse.ArgumentParser, writes: bool = False) -> None:
    where = "go" if writes else "are"
    parser.add_argument("--runs-dir", metavar="DIR", help=f"where run records {where} (default: the data directory)")


def job_flags(parser: argparse.ArgumentParser, resume: str | None = None) -> None:
    """Flags every job that is a recorded run shares; `resume` names the flag a resumed run is usually given."""
    if resume is not None:
        parser.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint, with its config "
                            f"(flags given here override it, e.g. a larger {resume})")
    config_flag(parser)
    runs_dir_flag(parser, writes=True)
    parser.add_argument(
        "--report-to", nargs="+", default=["trackio"], choices=["trackio", "wandb", "none"],
        help="metric trackers: trackio (local, default), wandb, none",
    )
    json_flag(parser)


def run_flags(parser: argparse.ArgumentParser) -> None:
    """Flags every command that reads a recorded run shares (sample, eval, bench, export...)."""
    config_flag(parser, print_config=False)
    runs_dir_flag(parser)
    json_flag(parser)


# -- config --------------------------------------------------------------------------------------------------------


def resolve_config(args: argparse.Namespace, model: type[M], overrides: dict[str, Any] | None = None,
                   resume: Callable[[str, dict[str, Any], str | None], M] | None = None) -> M:
    """The command's config: defaults < `--config` file < flags < `overrides`; under `--print-config`, print it, exit 0.

    With `--resume RUN`, `resume(RUN, flags, runs_dir)` gives the run's saved config with the flags on top instead.
    """
    from onecard.core.config import dump_config, explicit_fields, load_config

    flags = explicit_fields(model, args) | (overrides or {})
    card = [key for key in ("gpu", "vram") if key in model.model_fields]
    if len(card) == 2 and (flags.get("gpu") is None) != (flags.get("vram") is None):
        # a card named by a flag replaces the one a config file or the resumed run names, whichever way it was named
        other = "vram" if flags.get("gpu") is not None else "gpu"
        flags = {**flags, other: None}
    if resume is not None and getattr(args, "resume", None):
        config = resume(args.resume, flags, args.runs_dir)
    else:
        config = load_config(model, getattr(args, "config", None), flags)
    if getattr(args, "print_config", False):
        _print_json(dump_config(config))
        raise SystemExit(0)  # as argparse ends --help
    return config


def trackers(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(t for t in args.report_to if t != "none")


# -- output --------------------------------------------------------------------------------------------------------


def emit(args: argparse.Namespace, data: Any, render: Callable[[Any, Console], None] | None = None) -> None:
    """Print `data` as one JSON object under `--json`; otherwise `render(data, console)`, if there is a renderer."""
    if args.json:
        _print_json(data)
    elif render is not None:
        render(data, _console())


def echo(text: str) -> None:
    """Print streamed text as it comes (generated tokens)."""
    print(text, end="", flush=True)


def recorded(run: Run) -> dict[str, Any]:
    """What a training command prints under --json: the run's id and directory, and its metrics."""
    return {"run_id": run.id, "dir": str(run.dir), **run.record["metrics"]}


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False)

"""Progress bars (rich) on stderr, so stdout stays clean for --json; silenced by --quiet."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["track", "set_quiet", "is_quiet", "stderr_console"]

T = TypeVar("T")
_quiet = False


def set_quiet(quiet: bool) -> None:
    """Turn progress bars and status lines off (the CLI's --quiet)."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def stderr_console() -> Console:
    """The console for progress and status lines."""
    from rich.console import Console

    return Console(stderr=True, quiet=_quiet)


def track(items: Iterable[T], description: str, total: float | None = None) -> Iterator[T]:
    """Iterate with a progress bar (elapsed, remaining, rate) unless quiet."""
    if _quiet:
        yield from items
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=stderr_console(), transient=False) as progress:
        yield from progress.track(items, total=total, description=description)

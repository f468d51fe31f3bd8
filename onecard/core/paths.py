"""Where onecard keeps its state: one data directory, overridable by ONECARD_HOME or per command."""

from __future__ import annotations

import functools
import os
from pathlib import Path

__all__ = ["data_dir", "runs_dir"]


def data_dir() -> Path:
    """The data directory: $ONECARD_HOME, else the platform's user data dir (e.g. ~/.local/share/onecard)."""
    return _data_dir(os.environ.get("ONECARD_HOME") or None)


@functools.lru_cache(maxsize=8)
def _data_dir(env: str | None) -> Path:
    # cached per ONECARD_HOME value: platformdirs reads XDG variables and the home folder on each call (~0.1 ms),
    # which the planner would pay for every candidate `--solve` plans
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("onecard", appauthor=False))


def runs_dir() -> Path:
    """Where run directories live, one per job run."""
    return data_dir() / "runs"

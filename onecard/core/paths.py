"""Where onecard keeps its state: one data directory, overridable by ONECARD_HOME or per command."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "runs_dir"]


def data_dir() -> Path:
    """The data directory: $ONECARD_HOME, else the platform's user data dir (e.g. ~/.local/share/onecard)."""
    env = os.environ.get("ONECARD_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("onecard", appauthor=False))


def runs_dir() -> Path:
    """Where run directories live, one per job run."""
    return data_dir() / "runs"

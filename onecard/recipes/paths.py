"""The text of each recipe path, read from paths.yaml beside this module (data, not code)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

__all__ = ["PATHS", "path_text"]

PATHS = ("rag", "qlora", "yolo", "diffusion", "whisper", "vlm", "tinylm")


@cache
def _all() -> dict[str, dict[str, Any]]:
    import yaml

    data: dict[str, dict[str, Any]] = yaml.safe_load(
        resources.files("onecard.recipes").joinpath("paths.yaml").read_text(encoding="utf-8"))
    return data


def path_text(path: str) -> dict[str, Any]:
    """title, what, extra, downloads, commands ({run, why}: the command and what it is for), os notes, checks."""
    return _all()[path]

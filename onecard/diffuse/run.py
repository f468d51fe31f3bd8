"""Entry points of `onecard diffuse` (the CLI and web call these): `check`, `train`."""

from __future__ import annotations

from typing import Any

from onecard.diffuse.config import CheckConfig
from onecard.diffuse.data import check_images

__all__ = ["check"]


def check(config: CheckConfig) -> dict[str, Any]:
    """The data check's report: counts, and each problem by file (errors stop training, warnings do not)."""
    return check_images(config.data, config.resolution)

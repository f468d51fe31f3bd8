"""Optional dependencies: import them late, and name the extra that installs them when missing."""

from __future__ import annotations

import importlib
import importlib.util
import re
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType

from onecard.core.errors import MissingExtraError

__all__ = ["require", "available", "release"]


def require(module: str, extra: str, package: str | None = None) -> ModuleType:
    """Import `module`, or raise an error that says which onecard extra installs it.

    Args:
        module: the import name, e.g. "faiss".
        extra: the onecard extra that brings it, e.g. "rag".
        package: the PyPI name when it differs from the import name, e.g. "faiss-cpu".
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        name = package or module.split(".")[0]
        raise MissingExtraError(
            f"{name} is not installed ({e})",
            f"install it with `pip install 'onecard[{extra}]'`",
        ) from e


def available(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def release(distribution: str) -> str | None:
    """The installed release of a PyPI distribution as "major.minor.patch" (local and pre-release tags dropped),
    without importing it; None when it is not installed. fit plans some libraries' memory by release."""
    try:
        found = re.match(r"\d+\.\d+\.\d+", version(distribution))
    except PackageNotFoundError:
        return None
    return found.group(0) if found else None

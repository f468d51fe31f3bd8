"""Errors a user can act on: each says what went wrong, the offending value, and the fix."""

from __future__ import annotations

__all__ = ["OnecardError", "ConfigError", "MissingExtraError", "ModelNotFoundError", "DataError"]


class OnecardError(Exception):
    """An error the user can fix. `what` says what went wrong; `fix` says how to fix it."""

    def __init__(self, what: str, fix: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix

    def __str__(self) -> str:
        return self.what if not self.fix else f"{self.what}\n  fix: {self.fix}"


class ConfigError(OnecardError):
    """A config file or flag is invalid: unknown key, wrong type, bad value."""


class MissingExtraError(OnecardError):
    """An optional dependency is not installed."""


class ModelNotFoundError(OnecardError):
    """A model reference does not resolve to local files."""


class DataError(OnecardError):
    """An input data file is malformed; the message names the file and line."""

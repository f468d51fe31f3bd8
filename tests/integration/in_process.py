"""The CLI run in the test's own process (`onecard.cli.main`), its stdout and stderr captured."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

from onecard.cli import main


def cli(*args: str) -> tuple[int, str, str]:
    """`onecard -q ARGS`: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["-q", *args])
    return code, out.getvalue(), err.getvalue()


def cli_json(*args: str) -> dict[str, Any]:
    """`onecard -q ARGS --json`, which must succeed: its JSON object."""
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    return dict(json.loads(out))

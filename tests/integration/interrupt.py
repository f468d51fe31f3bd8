"""Ctrl-C in the integration tests: start a job, send SIGINT the moment it is ready (no sleep), wait for its end."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# Started as a script's background job is (`... &`): with SIGINT ignored, which Python keeps unless the run maps it.
IGNORING_SIGINT = ["sh", "-c", 'trap "" INT; exec "$@"', "sh"]


def interrupt_when_ready(argv: Sequence[str], ready: Callable[[], list[Path]], *, wait_s: float,
                         env: dict[str, str] | None = None) -> tuple[int, str, float]:
    """Run `argv`; as soon as `ready()` finds something, send it SIGINT. Returns exit code, stderr, when it was sent.

    Each job is started to run far longer than the 60 s it gets after the signal: uninterrupted, it would time out.
    """
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + wait_s
        while not ready() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert ready(), proc.communicate()[1] if proc.poll() is not None else f"not ready within {wait_s} s"
        sent = time.time()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, stderr, sent

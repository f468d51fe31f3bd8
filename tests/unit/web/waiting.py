"""Waiting on a job of the web app's queue, for the API tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient


def ended(job: dict[str, Any]) -> bool:
    return bool(job["ended_at"])


def wait_for(client: TestClient, job_id: str, done: Callable[[dict[str, Any]], Any] = ended,
             timeout_s: float = 240) -> dict[str, Any]:
    """The job as /api/jobs/ID shows it once `done(job)` holds (by default: it ended); fails after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if done(job):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not get there in {timeout_s} s: {job}")

"""/api/jobs: the job kinds and their forms, start / list / show / cancel a job, and its log as Server-Sent Events.

A job's config is validated by the CLI's own pydantic model before it is queued (a bad value is a 422 naming the
field), and the paths in it are kept inside the registered folders (`security.safe_path`).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from onecard.core.errors import MissingExtraError
from onecard.web.errors import RequestError
from onecard.web.forms import form_schema
from onecard.web.jobs import KINDS, Job, JobKind, JobQueue, find_kind, shutdown_all
from onecard.web.security import safe_path
from onecard.web.settings import WebSettings

__all__ = ["router", "queue_of", "start_job", "checked_config", "job_of", "installed_kind", "is_path"]

# Stopping the server interrupts its running job (as Ctrl-C in a terminal does to the whole process group).
router = APIRouter(prefix="/api/jobs", tags=["jobs"], on_shutdown=[shutdown_all])
_queue_lock = threading.Lock()

Tracker = Literal["trackio", "wandb", "none"]


class JobRequest(BaseModel):
    """A job to start: its kind and its config's keys (the rest take the config's defaults)."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description='"capability action", e.g. "tinylm train" (see /api/jobs/kinds)',
                      json_schema_extra={"enum": [k.name for k in KINDS]})
    config: dict[str, Any] = Field(default_factory=dict, description="config keys, as in the command's --config file")
    report_to: list[Tracker] = Field(["trackio"], description="metric trackers, as the CLI's --report-to")


def queue_of(request: Request) -> JobQueue:
    """The app's job queue, made on first use."""
    state = request.app.state
    with _queue_lock:
        if not hasattr(state, "jobs"):
            settings: WebSettings = state.settings
            state.jobs = JobQueue(settings.data_dir)
    queue: JobQueue = state.jobs
    return queue


def job_of(request: Request, job_id: str) -> Job:
    job = queue_of(request).jobs.get(job_id)
    if job is None:
        raise RequestError(404, f"no job {job_id!r}", "see GET /api/jobs for the jobs of this server")
    return job


def installed_kind(name: str) -> JobKind:
    """The job kind `name`, whose extra must be installed (else a 501 with the pip command): for the capability pages,
    which check it before they store an upload."""
    kind = find_kind(name)
    assert kind is not None, name
    if not kind.installed():
        raise MissingExtraError(f"{kind.name} needs the '{kind.extra}' extra, which is not installed",
                                f"install it with `{kind.install}`")
    return kind


def start_job(request: Request, kind: JobKind, values: dict[str, Any], report_to: Sequence[str] = ("trackio",),
              where: tuple[str, ...] = ("body", "config")) -> Job:
    """Validate `values` with the kind's config model, keep its paths inside the registered folders, queue it.

    `where` is the request location the values came from, for the 422's field names.
    """
    return queue_of(request).submit(kind, checked_config(request, kind, values, where), report_to)


def checked_config(request: Request, kind: JobKind, values: dict[str, Any],
                   where: tuple[str, ...] = ("body", "config")) -> BaseModel:
    """`start_job`'s checks without the queueing: the kind's config, validated, its paths inside the registered
    folders (for a recipe's steps, all checked before the first is queued)."""
    model = kind.model()
    try:
        config = model.model_validate(values)
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": (*where, *err["loc"])} for err in e.errors()]) from None
    settings: WebSettings = request.app.state.settings
    folders = (*settings.folders, settings.uploads_dir.resolve())
    checked: dict[str, Any] = {}
    for name in (*kind.paths, *kind.refs, *kind.outputs):
        value = getattr(config, name)
        if value is None:
            continue
        check_all = name in kind.paths
        items = [value] if isinstance(value, str) else list(value)
        checked[name] = [str(safe_path(v, folders)) if check_all or is_path(v) else v for v in items]
        if isinstance(value, str):
            checked[name] = checked[name][0]
    for name in kind.globs:
        pattern = getattr(config, name)
        if os.path.isabs(pattern) or ".." in Path(pattern).parts:
            raise RequestError(400, f"{name} {pattern!r} leaves the folder it is applied in",
                               f"give {name} a pattern inside the folder, without '..', e.g. '**/*.txt'")
    if checked:
        config = model.model_validate({**config.model_dump(), **checked})
    return config


def is_path(value: str) -> bool:
    """A ref that names a place on disk rather than a run id or hub id: absolute, `~`, `.` or `..` at its start."""
    return os.path.isabs(value) or value.startswith(("~", ".")) or ".." in Path(value).parts


@router.get("/kinds")
def kinds() -> list[dict[str, Any]]:
    """Every job kind: its form (built from its config) where its extra is installed, else the install command."""
    out = []
    for kind in KINDS:
        installed = kind.installed()
        out.append({"kind": kind.name, "capability": kind.capability, "action": kind.action, "installed": installed,
                    "install": None if installed else f"not installed: {kind.install}",
                    "form": form_schema(kind.model()) if installed else None})
    return out


@router.get("")
def list_jobs(request: Request) -> list[dict[str, Any]]:
    """Every job of this server, newest first, with its status and place in the queue."""
    return queue_of(request).summaries()


@router.post("", status_code=201)
def start(request: Request, body: JobRequest) -> dict[str, Any]:
    """Queue a job; it starts when the jobs before it have ended."""
    kind = find_kind(body.kind)
    if kind is None:
        names = ", ".join(k.name for k in KINDS)
        raise RequestValidationError([{"loc": ("body", "kind"), "msg": f"unknown job kind {body.kind!r}; one of: "
                                       f"{names}", "type": "value_error", "input": body.kind}])
    job = start_job(request, kind, body.config, body.report_to)
    return job.summary(queue_of(request).position(job))


@router.get("/{job_id}")
def show(request: Request, job_id: str, lines: int = 200) -> dict[str, Any]:
    """One job, with its last `lines` log lines."""
    job = job_of(request, job_id)
    return {**job.summary(queue_of(request).position(job)), "log": job.lines[-lines:] if lines > 0 else []}


@router.post("/{job_id}/cancel")
def cancel(request: Request, job_id: str) -> dict[str, Any]:
    """Ctrl-C's equivalent: a running job is sent SIGINT (its run ends interrupted); a queued one leaves the queue."""
    job = job_of(request, job_id)
    queue_of(request).cancel(job)
    return job.summary(queue_of(request).position(job))


@router.get("/{job_id}/log")
async def log(request: Request, job_id: str) -> StreamingResponse:
    """Server-Sent Events: `{"type": "line", "text"}` per log line, `{"type": "status", ...}` when the status,
    queue position or progress change; the stream ends with the job."""
    job = job_of(request, job_id)
    queue = queue_of(request)

    async def events() -> AsyncIterator[str]:
        sent, last = 0, None
        while True:
            done = job.ended_at is not None  # read before the lines: everything printed is in them by then
            dropped = job.dropped
            for text in job.lines[max(0, sent - dropped):]:
                yield _event({"type": "line", "text": text})
                sent = max(sent, dropped) + 1
            state = job.summary(queue.position(job))
            key = (state["status"], state["position"], json.dumps(state["progress"]), state["run_id"])
            if key != last or done:
                yield _event({"type": "status", **state})
                last = key
            if done or await request.is_disconnected():
                return
            await asyncio.sleep(0.25)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, default=str)}\n\n"

"""/runs and /api/runs: the run records, as `onecard runs list / show / compare` reads them (onecard.core.runs),
with each run's loss curves (its metrics.jsonl) and its files, downloadable from inside its own directory only."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from onecard.core.errors import OnecardError
from onecard.web.errors import RequestError
from onecard.web.security import safe_path

router = APIRouter(prefix="/api/runs", tags=["runs"])

Status = Literal["running", "succeeded", "failed", "interrupted"]
RUN_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"  # an id, a unique prefix or `last`: never a path
MAX_FILES = 500


def finite(data: dict[str, Any]) -> dict[str, Any]:
    """JSON allows no NaN or infinity: a diverged loss is sent as null."""
    return {k: nan_to_none(v) for k, v in data.items()}


def nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return finite(value)
    if isinstance(value, list | tuple):
        return [nan_to_none(v) for v in value]
    return value


def runs_root(request: Request) -> Path:
    return Path(request.app.state.settings.runs_dir)


def one_run(ref: str, request: Request) -> dict[str, Any]:
    """The run `ref` names, from this server's runs directory only."""
    from onecard.core.runs import find_run

    root = runs_root(request)
    try:
        record = find_run(ref, root)
    except RequestError:
        raise
    except OnecardError as e:  # no such run, or an ambiguous prefix
        raise RequestError(404, e.what, e.fix) from None
    # a run.json that find_run found elsewhere (it takes a folder path) is not this server's to show
    safe_path(str(Path(record["dir"]).resolve()), [root.resolve()], "this server's runs directory",
              "pick a run from /api/runs")
    return record


def files(run_dir: Path) -> list[dict[str, Any]]:
    """The run directory's files (relative paths, bytes), what /api/runs/{id}/files/{path} serves."""
    found = sorted(p for p in run_dir.rglob("*") if p.is_file() and not p.is_symlink())
    return [{"path": p.relative_to(run_dir).as_posix(), "bytes": p.stat().st_size} for p in found[:MAX_FILES]]


@router.get("", summary="Every run, newest first; filter by capability and status")
def list_runs(request: Request, capability: str | None = Query(None, max_length=64),
              status: Status | None = None, limit: int = Query(200, ge=1, le=10_000)) -> dict[str, Any]:
    from onecard.core.runs import flatten, load_runs

    found = [r for r in load_runs(runs_root(request))
             if (capability is None or r.get("capability") == capability)
             and (status is None or r.get("status") == status)][:limit]
    rows = [{key: r.get(key) for key in ("id", "capability", "status", "started_at", "duration_s")}
            | {"metrics": flatten(r.get("metrics", {}))} for r in found]
    capabilities = sorted({str(r.get("capability")) for r in load_runs(runs_root(request))})
    return finite({"runs": rows, "capabilities": capabilities})


@router.get("/compare", summary="Two runs side by side: config diff, metrics, both loss curves")
def compare_runs(request: Request, a: str = Query(pattern=RUN_ID), b: str = Query(pattern=RUN_ID)) -> dict[str, Any]:
    from onecard.core.runs import compare, history

    ra, rb = one_run(a, request), one_run(b, request)
    return finite(compare(ra, rb) | {"history": {"a": history(ra), "b": history(rb)}})


@router.get("/{run_id}", summary="One run: its record, metric history (loss curves) and files")
def show_run(request: Request, run_id: str = PathParam(pattern=RUN_ID)) -> dict[str, Any]:
    from onecard.core.runs import history

    record = one_run(run_id, request)
    return finite({"record": record, "history": history(record), "files": files(Path(record["dir"]))})


@router.get("/{run_id}/files/{path:path}", summary="Download one file of a run (inside its directory only)")
def run_file(request: Request, path: str, run_id: str = PathParam(pattern=RUN_ID)) -> FileResponse:
    run_dir = Path(one_run(run_id, request)["dir"]).resolve()
    file = safe_path(path, [run_dir], f"run {run_id}'s directory", f"pick a file from /api/runs/{run_id}")
    if not file.is_file():
        raise RequestError(404, f"run {run_id} has no file {path!r}", f"list its files with /api/runs/{run_id}")
    return FileResponse(file, filename=file.name)

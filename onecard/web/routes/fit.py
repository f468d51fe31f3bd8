"""/fit and /api/fit: the memory planner from a form. The same `FitJob` the CLI takes, the same `advise` it calls
(`onecard.fit.run`), the same JSON `onecard fit --json` prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request

from onecard.fit.job import FitJob
from onecard.web.security import safe_path

router = APIRouter(prefix="/api/fit", tags=["fit"])


def model_ref(ref: str, folders: tuple[Path, ...]) -> str:
    """A catalog name or hub id as given; a path only inside the registered folders (`safe_path`), and a model
    folder's shard files too. A relative name is looked up in the registered folders only, never in the server's
    working directory: whether a file exists anywhere else is not the web user's to learn."""
    from onecard.fit import catalog, diffusion, readers, whisper, yolo
    from onecard.fit.plan import looks_like_path

    if any(find(ref) is not None for find in (catalog.find, diffusion.find, yolo.find, whisper.find)):
        return ref
    pathlike = looks_like_path(ref)
    try:
        in_folder = not pathlike and any((folder / ref).exists() for folder in folders)
    except (OSError, ValueError):  # too long for a file name, or a NUL byte: not a path
        in_folder = False
    if not (pathlike or in_folder):
        return ref  # a hub id (looked up in the local cache) or an unknown name: the planner says which
    path = safe_path(ref, folders)
    if path.is_dir():
        for shard in readers.shard_files(path):  # a symlinked shard may lead out of the folders: refused the same way
            safe_path(shard, folders)
    return str(path)


def checked(job: FitJob, request: Request) -> FitJob:
    model = model_ref(job.model, request.app.state.settings.folders)
    if model == job.model:
        return job
    fixed = job.model_fields_set
    job = job.model_copy(update={"model": model})
    job.__pydantic_fields_set__ = set(fixed)  # the search keeps what the user set, as on the CLI
    return job


@router.post("", summary="Plan a job on a card: breakdown, process total vs budget, fits or not, the safe bound")
def plan(job: FitJob, request: Request) -> dict[str, Any]:
    from onecard.fit.readers import absolute_paths_only
    from onecard.fit.run import advise

    job = checked(job, request)
    with absolute_paths_only():
        return advise(job, fixed=job.model_fields_set).to_json()


@router.post("/solve", summary="The settings that fit the card, ranked (onecard fit --solve)")
def solve(job: FitJob, request: Request, top: int = Query(10, ge=1, le=50)) -> dict[str, Any]:
    from onecard.fit.readers import absolute_paths_only
    from onecard.fit.run import advise

    job = checked(job, request)
    with absolute_paths_only():
        return advise(job, fixed=job.model_fields_set, solutions=True, top=top).to_json()


@router.get("/cards", summary="The cards the planner knows")
def cards() -> list[dict[str, Any]]:
    from onecard.core import gpus

    return [{"key": g.key, "name": g.name, "vram_gib": g.vram_gib, "aliases": list(g.aliases)} for g in gpus.GPUS]


@router.get("/models", summary="The catalog's models, by family")
def models() -> dict[str, list[str]]:
    from onecard.fit import catalog, diffusion, whisper, yolo

    return {"llm": [a.key for a in catalog.CATALOG], "diffusion": list(diffusion.CATALOG),
            "yolo": list(yolo.CATALOG), "whisper": [f"whisper-{k}" for k in whisper.CATALOG]}


@router.get("/schema", summary="The FitJob fields (JSON schema): the form is built from them")
def schema() -> dict[str, Any]:
    return FitJob.model_json_schema()

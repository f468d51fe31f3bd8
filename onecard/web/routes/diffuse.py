"""/api/diffuse: images from a trained LoRA run or a pipeline folder (a `diffuse sample` job), and the images.

The body is `onecard diffuse sample`'s config (SampleConfig): `source` (a run id, 'last', or a pipeline folder inside
a registered folder) and `prompt`, the rest optional. The job's PNGs go to its folder; GET image/JOB/N serves them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import FileResponse

from onecard.web.errors import RequestError
from onecard.web.routes.jobs import installed_kind, job_of, queue_of, start_job
from onecard.web.security import safe_path

__all__ = ["router"]

router = APIRouter(prefix="/api/diffuse", tags=["diffuse"])


@router.post("/sample", status_code=201)
def sample(request: Request, config: Annotated[dict[str, Any], Body(
        description="SampleConfig keys: source, prompt (required), negative_prompt, steps, guidance, seed, batch, "
                    "resolution, weight, lora...", examples=[{"source": "last", "prompt": "a photo of sks dog"}])],
           ) -> dict[str, Any]:
    """Queue `onecard diffuse sample`; the job's result lists its images (GET /api/diffuse/image/JOB/N)."""
    job = start_job(request, installed_kind("diffuse sample"), config, ("trackio",), ("body",))
    return job.summary(queue_of(request).position(job))


@router.get("/image/{job_id}/{n}")
def image(request: Request, job_id: str, n: int) -> FileResponse:
    """Image `n` (from 0) of a finished sample job, as PNG."""
    job = job_of(request, job_id)
    images = (job.result or {}).get("images", []) if job.kind.name == "diffuse sample" else []
    if not 0 <= n < len(images):
        raise RequestError(404, f"job {job_id} has no image {n} ({len(images)} images; status {job.status})")
    path = safe_path(Path(images[n]["file"]), (job.dir, *request.app.state.settings.folders))
    return FileResponse(path, media_type="image/png")

"""/api/detect: boxes on an uploaded image, from a trained detect run or a weights file (a `detect predict` job).

The image is saved by `security.save_upload` (size limit, generated name) and predicted on by the Jobs queue, so it
waits for the card like any job; the page follows the job (/api/jobs/ID/log) and draws its detections.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile

from onecard.web.routes.jobs import installed_kind, queue_of, start_job
from onecard.web.security import save_upload

__all__ = ["router"]

router = APIRouter(prefix="/api/detect", tags=["detect"])


@router.post("/predict", status_code=201)
async def predict(request: Request, image: Annotated[UploadFile, File(description="an image (jpg, png...)")],
                  run: Annotated[str, Form(description="a detect run (id, prefix or 'last') or a weights file (.pt) "
                                                       "inside a registered folder")] = "last",
                  conf: Annotated[float, Form(ge=0, le=1, description="keep boxes at least this confident")] = 0.25,
                  ) -> dict[str, Any]:
    """Queue `onecard detect predict` on the uploaded image; the job's result holds each box (xyxy pixels)."""
    kind = installed_kind("detect predict")
    settings = request.app.state.settings
    saved = await save_upload(image, settings)
    job = start_job(request, kind, {"run": run, "source": [str(saved)], "conf": conf}, ("trackio",), ("body",))
    return job.summary(queue_of(request).position(job))

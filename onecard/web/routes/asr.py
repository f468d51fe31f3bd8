"""/api/asr: a transcript of an uploaded recording (an `asr transcribe` job), and its segments with speakers and times
(labelled by the diarizer the form names: `--diarizer`).

The audio is saved by `security.save_upload` (size limit, generated name) and transcribed by the Jobs queue; the
page follows the job (/api/jobs/ID/log), then reads the transcript's segments here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile

from onecard.web.errors import RequestError
from onecard.web.routes.jobs import installed_kind, job_of, queue_of, start_job
from onecard.web.security import save_upload

__all__ = ["router"]

router = APIRouter(prefix="/api/asr", tags=["asr"])


@router.post("/transcribe", status_code=201)
async def transcribe(
        request: Request, audio: Annotated[UploadFile, File(description="audio or video (wav, flac, mp3, m4a...)")],
        model: Annotated[str, Form(description="Whisper model, as `onecard asr transcribe --model`")] = "tiny.en",
        language: Annotated[str, Form(description="language code, or auto")] = "auto",
        speakers: Annotated[str, Form(description="speaker labels: auto, a number of speakers, or off")] = "off",
        diarizer: Annotated[str, Form(max_length=512, description="who labels the speakers, as `onecard asr transcribe "
                                      "--diarizer`: auto, resemblyzer, pyannote, or a pyannote pipeline (a cached hub "
                                      "id, or a folder inside the registered folders: absolute or ./NAME)")] = "auto",
) -> dict[str, Any]:
    """Queue `onecard asr transcribe` on the upload; GET /api/asr/transcript/JOB gives its segments once it is done."""
    kind = installed_kind("asr transcribe")
    saved = await save_upload(audio, request.app.state.settings)
    values = {"audio": [str(saved)], "model": model, "language": language, "speakers": speakers,
              "diarizer": diarizer}
    try:
        job = start_job(request, kind, values, ("trackio",), ("body",))
    except Exception:
        saved.unlink(missing_ok=True)  # a refused request keeps no upload
        raise
    return job.summary(queue_of(request).position(job))


@router.get("/transcript/{job_id}")
def transcript(request: Request, job_id: str) -> dict[str, Any]:
    """The finished job's transcript: language, duration, text, segments (start, end, speaker, text), and the
    diarizer that labelled the speakers and why (None with speakers off)."""
    job = job_of(request, job_id)
    if job.kind.name != "asr transcribe":
        raise RequestError(400, f"job {job_id} is a {job.kind.name} job, not a transcription")
    if job.status != "succeeded":
        raise RequestError(409, f"job {job_id} is {job.status}: no transcript", "wait for it to succeed")
    files = [Path(f) for entry in job.result["files"] for f in entry["files"] if f.endswith(".json")]
    if not files:
        raise RequestError(404, f"job {job_id} wrote no JSON transcript", "keep 'json' in its formats")
    data = json.loads(files[0].read_text(encoding="utf-8"))
    segments = [{"start": s["start"], "end": s["end"], "speaker": s.get("speaker"), "text": s["text"].strip()}
                for s in data["segments"]]
    return {"job": job_id, "run_id": job.run_id, "audio": data["audio"], "language": data["language"],
            "duration_s": data["duration_s"], "text": data["text"], "segments": segments,
            "diarizer": job.result.get("diarizer")}

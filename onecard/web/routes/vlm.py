"""/api/vlm: whether the vlm capability is built into this install, and chat about an uploaded image through it.

The image is saved by `security.save_upload` (size limit, generated name) and asked about by a `vlm chat` job of the
Jobs queue: `onecard vlm chat --prompt ... --json` in its own process, so the question waits for the card behind any
running GPU job (as detect's and asr's pages do) and leaves the run record `onecard vlm chat` leaves from a terminal
(settings, conversation, token counts). The answer comes as Server-Sent Events: the job's own status and log events
(as /api/jobs/ID/log sends them) while it waits and runs, then the answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import StreamingResponse

from onecard.core.errors import MissingExtraError
from onecard.core.extras import available
from onecard.web.jobs import JobKind
from onecard.web.routes.chat import sse
from onecard.web.routes.jobs import log as job_log
from onecard.web.routes.jobs import queue_of, start_job
from onecard.web.security import save_upload

__all__ = ["router", "CHAT"]

router = APIRouter(prefix="/api/vlm", tags=["vlm"])

# Not among the Jobs page's kinds: a chat is asked from this page, one question at a time (no --report-to: not a
# training action). Its image is an upload, its model a name ('tiny', a hub id) or a path kept inside the folders.
CHAT = JobKind("vlm", "chat", "onecard.vlm.config:VlmChatConfig", "vlm",
               ("onecard.vlm", "torch", "transformers", "PIL"), paths=("image",), refs=("model",))


@router.get("/status")
def status() -> dict[str, Any]:
    """`built`: `onecard.vlm` is part of this onecard; `installed`: its extra's libraries are importable."""
    built = available("onecard.vlm")
    installed = built and all(available(m) for m in CHAT.needs)
    return {"built": built, "installed": installed,
            "message": None if installed else "not built yet in this install" if not built
            else f"not installed: {CHAT.install}"}


@router.post("/chat")
async def chat(request: Request, image: Annotated[UploadFile, File(description="the image to ask about")],
               question: Annotated[str, Form(min_length=1, description="what to ask about the image")],
               model: Annotated[str, Form(description="'tiny' (a random-weight LLaVA, to try the flow), a cached "
                                                      "hub id (llava-hf/llava-1.5-7b-hf) or a model folder inside a "
                                                      "registered folder")] = "tiny",
               max_tokens: Annotated[int, Form(ge=1, le=4096, description="at most this many tokens")] = 128,
               ) -> StreamingResponse:
    """Queue `onecard vlm chat` on the upload and follow it as Server-Sent Events: the job's {"type": "status", ...}
    (queued with its position, running, its run) and {"type": "line", "text"} events, then {"type": "text", "text"}
    and {"type": "done", "reply": counts and speeds, "job", "run_id"}, or a last {"type": "error", "error", "fix"}
    when the job fails. A client that goes away cancels its question (queued: it leaves the queue; running: Ctrl-C)."""
    state = status()
    if not state["installed"]:  # said before the upload is stored
        raise MissingExtraError(f"vlm chat is {state['message']}", f"install it with `{CHAT.install}`")
    saved = await save_upload(image, request.app.state.settings)
    values = {"model": model, "image": [str(saved)], "prompt": question, "max_tokens": max_tokens}
    try:
        job = start_job(request, CHAT, values, (), ("body",))
    except Exception:
        saved.unlink(missing_ok=True)  # a refused request keeps no upload
        raise
    queue = queue_of(request)
    followed = (await job_log(request, job.id)).body_iterator

    async def events() -> AsyncIterator[Any]:
        try:
            async for chunk in followed:
                yield chunk
        finally:
            gone = job.ended_at is None  # the client went away (or the server is stopping) before the answer
            if gone:
                queue.cancel(job)
        if gone:
            return
        result = job.result if isinstance(job.result, dict) else {}
        if job.status != "succeeded" or "text" not in result:
            why = f": {job.error}" if job.error else ""
            yield sse({"type": "error", "error": f"the question's job {job.id} ended {job.status}{why}",
                       "fix": f"see the job's log on the Jobs page (/jobs#{job.id})"})
            return
        if result["text"]:
            yield sse({"type": "text", "text": result["text"]})
        reply = {k: v for k, v in result.items() if k not in ("backend", "model", "settings")}
        yield sse({"type": "done", "reply": reply, "backend": result.get("backend"), "model": result.get("model"),
                   "settings": result.get("settings"), "job": job.id, "run_id": job.run_id,
                   "run_url": f"/runs?id={job.run_id}" if job.run_id else None})

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

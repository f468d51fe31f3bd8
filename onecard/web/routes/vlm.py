"""/api/vlm: whether the vlm capability is built into this install, and chat about an uploaded image through it.

The image is saved by `security.save_upload` (size limit, generated name); the vision model is opened by
`onecard.vlm.chat.open_backend` (fitted to the card, as `onecard vlm chat`), kept loaded for the next question, and
its answer streams back as Server-Sent Events.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from onecard.core.errors import MissingExtraError, OnecardError
from onecard.core.extras import available
from onecard.web.routes.jobs import is_path
from onecard.web.security import safe_path, save_upload

__all__ = ["router"]

router = APIRouter(prefix="/api/vlm", tags=["vlm"])
_state_lock = threading.Lock()


@router.get("/status")
def status() -> dict[str, Any]:
    """`built`: `onecard.vlm` is part of this onecard; `installed`: its extra's libraries are importable."""
    built = available("onecard.vlm")
    installed = built and all(available(m) for m in ("torch", "transformers", "PIL"))
    return {"built": built, "installed": installed,
            "message": None if installed else "not built yet in this install" if not built
            else "not installed: pip install 'onecard[vlm]'"}


class _Loaded:
    """The vision model in memory (one at a time), and the lock each answer holds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: str | None = None
        self.backend: Any = None

    def get(self, config: Any) -> Any:
        from onecard.vlm.chat import open_backend

        key = json.dumps([config.model, config.backend, config.quant, config.gpu])
        if key != self.key:
            if self.backend is not None:
                self.backend.close()
            self.backend, self.key = None, None
            self.backend, self.key = open_backend(config), key
        return self.backend


def _loaded(request: Request) -> _Loaded:
    with _state_lock:
        if not hasattr(request.app.state, "vlm"):
            request.app.state.vlm = _Loaded()
    found: _Loaded = request.app.state.vlm
    return found


@router.post("/chat")
async def chat(request: Request, image: Annotated[UploadFile, File(description="the image to ask about")],
               question: Annotated[str, Form(min_length=1, description="what to ask about the image")],
               model: Annotated[str, Form(description="'tiny' (a random-weight LLaVA, to try the flow), a cached "
                                                      "hub id (llava-hf/llava-1.5-7b-hf) or a model folder inside a "
                                                      "registered folder")] = "tiny",
               max_tokens: Annotated[int, Form(ge=1, le=4096, description="at most this many tokens")] = 128,
               ) -> StreamingResponse:
    """The answer as Server-Sent Events: {"type": "text", "text"} pieces, then {"type": "done", "reply": counts and
    speeds}; an error after the stream began is a last {"type": "error", "error", "fix"}."""
    state = status()
    if not state["installed"]:
        raise MissingExtraError(f"vlm chat is {state['message']}", "install onecard with the vlm extra: "
                                "pip install 'onecard[vlm]'")
    from onecard.llm.images import user_message
    from onecard.vlm.config import VlmChatConfig

    settings = request.app.state.settings
    if is_path(model):
        model = str(safe_path(model, settings.folders))
    saved = await save_upload(image, settings)
    try:
        config = VlmChatConfig.model_validate({"model": model, "image": [saved], "prompt": question,
                                               "max_tokens": max_tokens})
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from None
    loaded = _loaded(request)
    with loaded.lock:
        loaded.get(config)  # a model that does not load is a 4xx here, before the stream begins

    def events() -> Iterator[str]:
        try:
            with loaded.lock:
                stream = loaded.get(config).stream([user_message(question, [saved])], temperature=config.temperature,
                                                   max_tokens=max_tokens, seed=config.seed)
                for piece in stream:
                    yield _event({"type": "text", "text": piece})
                yield _event({"type": "done", "reply": stream.reply.to_json()})
        except OnecardError as e:
            yield _event({"type": "error", "error": e.what, "fix": e.fix})

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, default=str)}\n\n"

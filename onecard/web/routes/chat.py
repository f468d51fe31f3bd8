"""/api/chat: streaming chat with any `onecard.llm` backend; and what the chat, RAG and /v1 routes share.

Shared: `Loaded`, the one chat model held in memory (one GPU: asking for another model closes the first) with the
lock every generation holds, since an embedded llama.cpp model answers one request at a time; `pushed`, which runs
a job in a worker thread and hands its pieces to a Server-Sent Events stream, stopping the job when the client goes;
`checked_model`, which keeps a request's model to the models this machine lists (or a file in a registered folder).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from onecard.core.errors import OnecardError
from onecard.llm.config import ChatConfig, LLMConfig
from onecard.web.security import safe_path

__all__ = ["router", "ChatRequest", "ChatMessage", "ToolSchema", "Loaded", "loaded", "pushed", "sse", "events",
           "checked_model", "llm_config", "local_models", "CTX_FIELD", "THREADS_FIELD"]

log = logging.getLogger("onecard.web")
router = APIRouter(tags=["chat"])


class ChatMessage(BaseModel):
    """One message of the conversation, as in the OpenAI API."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = Field("", description="the text (or OpenAI content parts)")
    tool_calls: list[dict[str, Any]] | None = Field(None, description="assistant: the calls it made")
    tool_call_id: str | None = Field(None, description="tool: the call this result answers")
    name: str | None = Field(None, description="tool: the function's name")


class _Function(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolSchema(BaseModel):
    """An OpenAI tool schema: a function the model may ask to call (the chat shows the call; it runs nothing)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"] = "function"
    function: _Function


# A request cannot make the server allocate more: the longest context of the models onecard's catalog knows (Llama
# 3.1, Qwen2.5), and llama.cpp threads within reason (each is an OS thread).
MAX_CTX = 131_072
MAX_THREADS = 256
CTX_FIELD = Field(None, ge=64, le=MAX_CTX, description=LLMConfig.model_fields["ctx"].description)
THREADS_FIELD = Field(None, ge=1, le=MAX_THREADS, description=LLMConfig.model_fields["threads"].description)


class ChatRequest(LLMConfig):
    """`POST /api/chat`: the conversation, the model (as `onecard chat` takes it) and the reply's settings."""

    ctx: int | None = CTX_FIELD
    threads: int | None = THREADS_FIELD

    messages: list[ChatMessage] = Field(min_length=1, description="the conversation so far, the user's turn last")
    system: str = ChatConfig.model_fields["system"]  # type: ignore[assignment]
    temperature: float = ChatConfig.model_fields["temperature"]  # type: ignore[assignment]
    max_tokens: int | None = ChatConfig.model_fields["max_tokens"]  # type: ignore[assignment]
    json_schema: dict[str, Any] | None = Field(None, description="constrain the reply to this JSON Schema (as "
                                               "`onecard chat --json-schema FILE`); the reply comes whole once valid")
    tools: list[ToolSchema] | None = Field(None, description="OpenAI tool schemas: the reply may be a call to one")


# -- shared by the chat, RAG and /v1 routes --------------------------------------------------------------------------


class Loaded:
    """The chat model in memory, and the lock each generation holds. `get` must be called with `lock` held."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: str | None = None
        self.backend: Any = None
        self.searchers: dict[str, Any] = {}  # RAG: one open searcher per index and retrieval setting

    def get(self, config: LLMConfig) -> Any:
        """The backend for `config`, loading it (and closing the one before) when it is another."""
        from onecard.llm import load
        from onecard.llm.config import DEFAULT_MODEL

        # The seed is the sampling seed each request passes on; the default model named or not is the same model.
        default = config.backend in ("llamacpp", "transformers") and config.model in (None, DEFAULT_MODEL)
        key = config.model_copy(update={"seed": 0, "model": DEFAULT_MODEL if default else config.model}
                                ).model_dump_json()
        if key != self.key:
            if self.backend is not None:
                self.backend.close()
            self.backend, self.key = None, None
            self.backend, self.key = load(config), key
        return self.backend


def loaded(request: Request) -> Loaded:
    """The app's `Loaded` (created on first use)."""
    state = request.app.state
    if not hasattr(state, "loaded"):
        state.loaded = Loaded()
    found: Loaded = state.loaded
    return found


def llm_config(config: LLMConfig) -> LLMConfig:
    """Only the fields that open a model (a request's own fields, such as messages, left out)."""
    return LLMConfig(**config.model_dump(include=set(LLMConfig.model_fields)))


_LISTED: list[Any] = [float("-inf"), []]  # when the models were last listed, and the list
LIST_TTL_S = 10.0  # a request does not walk the hub cache and ask Ollama again within this many seconds


def local_models() -> list[dict[str, Any]]:
    """The chat models on this machine (`onecard llm list`), listed again at most every LIST_TTL_S seconds."""
    import time

    from onecard.llm import catalog

    if time.monotonic() - _LISTED[0] > LIST_TTL_S:
        _LISTED[:] = [time.monotonic(), catalog.list_local()]
    models: list[dict[str, Any]] = _LISTED[1]
    return models


def checked_model(config: LLMConfig, folders: tuple[Path, ...]) -> LLMConfig:
    """`config` with a model this server may open: llamacpp and transformers models are ones `onecard llm list`
    shows, or files inside a registered folder (never any other path a request names), and so is a projector file
    (`mmproj`); ollama and openai models are names their server resolves."""
    mmproj = getattr(config, "mmproj", None)  # a vision model's projector file: a path as well
    if mmproj is not None:
        config = config.model_copy(update={"mmproj": safe_path(mmproj, folders)})
    if config.backend in ("ollama", "openai") or config.model is None:
        return config
    if config.model in {m["ref"] for m in local_models() if m["backend"] in ("llamacpp", "transformers")}:
        return config
    return config.model_copy(update={"model": str(safe_path(config.model, folders))})


class _Stopped(Exception):
    """The client went away: the job stops at its next piece."""


def pushed(job: Callable[[Callable[[Any], None]], Any]) -> Iterator[tuple[str, Any]]:
    """Run `job(emit)` in a worker thread; yield ("piece", x) for each `emit(x)`, then ("result", its return value).

    The job's error is raised here. When the consumer stops (the client disconnected and the generator is closed),
    the job's next `emit` raises, so a generation holding the model's lock ends at once.
    """
    out: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()

    def emit(piece: Any) -> None:
        if stop.is_set():
            raise _Stopped
        out.put(("piece", piece))

    def work() -> None:
        try:
            out.put(("result", job(emit)))
        except _Stopped:
            pass
        except BaseException as e:  # handed to the consumer, which raises it
            out.put(("error", e))

    threading.Thread(target=work, daemon=True, name="onecard-web-job").start()
    try:
        while True:
            kind, value = out.get()
            if kind == "error":
                raise value
            yield kind, value
            if kind == "result":
                return
    finally:
        stop.set()


def sse(data: Any) -> str:
    """One Server-Sent Event carrying `data` as JSON."""
    return f"data: {json.dumps(data, default=str)}\n\n"


def events(items: Iterator[dict[str, Any]]) -> StreamingResponse:
    """A text/event-stream of `items`; an error once the stream has begun is its last event: {"type": "error", ...}."""

    def body() -> Iterator[str]:
        try:
            for item in items:
                yield sse(item)
        except OnecardError as e:
            yield sse({"type": "error", "error": e.what, "fix": e.fix})
        except Exception as e:
            log.exception("error in a stream", exc_info=e)
            yield sse({"type": "error", "error": f"internal error ({type(e).__name__}: {e}); the server is still up",
                       "fix": "see the server's log"})

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# -- /api/chat ---------------------------------------------------------------------------------------------------------


@router.get("/api/chat/models")
def chat_models() -> dict[str, Any]:
    """The chat models on this machine (shipped, GGUF folders, hub cache, a running Ollama) and the default."""
    from onecard.llm.config import DEFAULT_MODEL

    return {"default": DEFAULT_MODEL, "models": local_models()}


@router.post("/api/chat")
def chat(body: ChatRequest, request: Request) -> StreamingResponse:
    """Answer the conversation as Server-Sent Events: {"type": "text", "text"} pieces as they come, then
    {"type": "done", "reply": text, token counts, timings and speeds, "message": the assistant message to append};
    an error after the stream began is a last {"type": "error", "error", "fix"} event."""
    from onecard.llm.config import DEFAULT_MAX_TOKENS
    from onecard.llm.schema import bounded, check_schema, max_reply_chars

    config = checked_model(llm_config(body), request.app.state.settings.folders)
    schema = check_schema(body.json_schema) if body.json_schema is not None else None
    # As `onecard chat`: room for the longest reply the bounded schema allows, one token per character.
    longest = max_reply_chars(bounded(schema)) if schema else None
    max_tokens = body.max_tokens or max(DEFAULT_MAX_TOKENS, (longest or 0) + 1)
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    if body.system and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": body.system})
    tools = [t.model_dump(exclude_none=True) for t in body.tools] if body.tools else None
    state = loaded(request)
    with state.lock:
        state.get(config)  # a model that does not load is a 4xx here, before the stream begins

    def job(emit: Callable[[Any], None]) -> Any:
        with state.lock:
            backend = state.get(config)
            stream = backend.stream(messages, tools=tools, json_schema=schema, temperature=body.temperature,
                                    max_tokens=max_tokens, seed=body.seed)
            for piece in stream:
                if schema is None:
                    emit(piece)
            return backend, stream.reply

    def items() -> Iterator[dict[str, Any]]:
        for kind, value in pushed(job):
            if kind == "piece":
                yield {"type": "text", "text": value}
                continue
            backend, reply = value
            if schema is not None:
                yield {"type": "text", "text": reply.text}
            yield {"type": "done", "backend": backend.name, "model": backend.model, "settings": backend.settings,
                   "reply": reply.to_json(), "message": reply.message()}

    return events(items())

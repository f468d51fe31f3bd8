"""/v1: an OpenAI-compatible endpoint served from `onecard.llm`, so any OpenAI client or UI can use onecard.

`GET /v1/models` lists the chat models on this machine and every RAG index as `rag:NAME`; `POST
/v1/chat/completions` answers, whole or streamed (OpenAI's `chat.completion.chunk` events, then `data: [DONE]`),
with usage counts. A `rag:NAME` model answers from that index with `[n]` citations, its sources listed after the
answer and under `citations`. Errors take OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from onecard.core.errors import MissingExtraError, OnecardError
from onecard.llm.config import LLMConfig
from onecard.web.errors import status_of
from onecard.web.routes.chat import ChatMessage, ToolSchema, llm_config, loaded, local_models, pushed
from onecard.web.routes.rag import index_names, rag_answer

__all__ = ["router", "CompletionRequest"]

log = logging.getLogger("onecard.web")
router = APIRouter(prefix="/v1", tags=["openai"])
RAG_PREFIX = "rag:"


class _JsonSchema(BaseModel):
    name: str = "reply"
    schema_: dict[str, Any] = Field(default_factory=lambda: {"type": "object"}, alias="schema")
    strict: bool | None = None


class _ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: _JsonSchema | None = None


class _StreamOptions(BaseModel):
    include_usage: bool = False


class CompletionRequest(BaseModel):
    """The body of `POST /v1/chat/completions` (OpenAI's fields; ones onecard does not use, such as top_p, are
    accepted and ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="an id from /v1/models: a local chat model, an Ollama tag, or rag:NAME")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2, description="None: 0, greedy (onecard's default)")
    seed: int | None = None
    n: int = Field(1, ge=1, le=1, description="one choice only")
    tools: list[ToolSchema] | None = None
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] = "auto"
    response_format: _ResponseFormat | None = None


def error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
          code: str | None = None) -> JSONResponse:
    """An error as OpenAI's API answers it."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status)


def _oai_status(e: OnecardError) -> tuple[int, str | None]:
    """The status and OpenAI `code` of an onecard error. A backend whose extra is not installed is a 400 here, not the
    pages' 501: OpenAI's clients retry every 5xx (openai-python: 408, 409, 429 and >= 500), and no retry installs a
    package."""
    if isinstance(e, MissingExtraError):
        return 400, "backend_not_installed"
    status = status_of(e)
    return status, {404: "model_not_found", 403: "forbidden"}.get(status)


def _oai_body(e: OnecardError) -> dict[str, Any]:
    message = e.what + (f" (fix: {e.fix})" if e.fix else "")
    return {"message": message, "type": "invalid_request_error", "param": None, "code": _oai_status(e)[1]}


def _oai_error(e: OnecardError) -> JSONResponse:
    """An onecard error as OpenAI's API answers it."""
    return JSONResponse({"error": _oai_body(e)}, status_code=_oai_status(e)[0])


def model_table() -> dict[str, tuple[str, str]]:
    """id -> (backend, model) for every chat model listed (llamacpp, transformers, ollama)."""
    return {m["ref"]: (m["backend"], m["ref"]) for m in local_models()}


@router.get("/models")
def models(request: Request) -> dict[str, Any]:
    """The chat models on this machine and every RAG index as `rag:NAME`, in OpenAI's list shape."""
    ids = list(model_table()) + [RAG_PREFIX + n for n in index_names(request.app.state.settings)]
    return {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "onecard"}
                                       for i in ids]}


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with its `$defs` references replaced by the definitions (the body is parsed by hand, so FastAPI does
    not put its models in the OpenAPI components)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            return walk(defs[ref.split("/")[-1]]) if ref.startswith("#/$defs/") else {k: walk(v) for k, v in
                                                                                      node.items()}
        return [walk(v) for v in node] if isinstance(node, list) else node

    return dict(walk(schema))


@router.post("/chat/completions", openapi_extra={"requestBody": {"required": True, "content": {
    "application/json": {"schema": _inlined(CompletionRequest.model_json_schema())}}}})
async def chat_completions(request: Request) -> Any:
    """OpenAI's chat completions over `onecard.llm` (whole, or streamed with `stream: true`); `rag:NAME` answers from
    that index with citations."""
    try:
        body = CompletionRequest.model_validate(json.loads(await request.body() or b"null"))
    except json.JSONDecodeError as e:
        return error(400, f"the body is not valid JSON ({e.msg} at position {e.pos})")
    except ValidationError as e:
        first = e.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        return error(400, f"{param}: {first['msg']}", param=param)
    except (ValueError, RecursionError) as e:  # not UTF-8; a number of over 4300 digits; nesting past the stack
        return error(400, f"the body is not usable JSON ({type(e).__name__}: {str(e)[:200]})")
    from starlette.concurrency import run_in_threadpool

    try:
        job, name = await run_in_threadpool(_prepare, body, request)
    except OnecardError as e:
        return _oai_error(e)
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_chunks(job, cid, created, name, include_usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        reply, extra = await run_in_threadpool(job, lambda piece: None)
    except OnecardError as e:
        return _oai_error(e)
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [c.to_message() for c in reply.tool_calls]
    return {"id": cid, "object": "chat.completion", "created": created, "model": name,
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason, "logprobs": None}],
            "usage": _usage(reply), **extra}


Job = Callable[[Callable[[str], None]], tuple[Any, dict[str, Any]]]


def _prepare(body: CompletionRequest, request: Request) -> tuple[Job, str]:
    """The job that answers `body` (it streams text to its argument and returns the Reply and extra fields), and
    the model's name; the model is loaded here, so that a bad one is an error before any stream begins."""
    from onecard.core.errors import ModelNotFoundError

    state = loaded(request)
    settings = request.app.state.settings
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    max_tokens = body.max_completion_tokens or body.max_tokens
    temperature = body.temperature or 0.0
    if body.model.startswith(RAG_PREFIX):
        return rag_answer(state, settings, body.model[len(RAG_PREFIX):], messages, temperature, max_tokens), body.model
    found = model_table().get(body.model)
    if found is None:
        raise ModelNotFoundError(f"the model `{body.model}` does not exist here",
                                 "GET /v1/models lists the models this server has")
    config = llm_config(LLMConfig(backend=found[0], model=found[1]))  # type: ignore[arg-type]
    tools = [t.model_dump(exclude_none=True) for t in body.tools] if body.tools else None
    choice = body.tool_choice
    if isinstance(choice, dict):  # {"type": "function", "function": {"name": N}}: that tool, and a call to it
        wanted = (choice.get("function") or {}).get("name")
        tools = [t for t in tools or [] if t["function"]["name"] == wanted]
        if not tools:
            raise OnecardError(f"tool_choice names the function {wanted!r}, which is not among the tools")
        choice = "required"
    fmt = body.response_format
    schema = None
    if fmt is not None and fmt.type == "json_object":
        schema = {"type": "object"}
    elif fmt is not None and fmt.type == "json_schema":
        schema = fmt.json_schema.schema_ if fmt.json_schema else {"type": "object"}
    with state.lock:
        state.get(config)

    def job(emit: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
        with state.lock:
            stream = state.get(config).stream(messages, tools=tools, tool_choice=choice, json_schema=schema,
                                              temperature=temperature, max_tokens=max_tokens or 512, seed=body.seed)
            for piece in stream:
                emit(piece)
            return stream.reply, {}

    return job, body.model


def _usage(reply: Any) -> dict[str, int]:
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens}


def _chunks(job: Job, cid: str, created: int, name: str, include_usage: bool) -> Iterator[str]:
    """OpenAI's stream: a role chunk, content chunks, tool calls, the finish chunk (with usage unless asked for in a
    chunk of its own, as `stream_options.include_usage` does), then `data: [DONE]`."""
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
        return f"data: {json.dumps(data, default=str)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    try:
        for kind, value in pushed(job):
            if kind == "piece":
                yield chunk({"content": value})
                continue
            reply, extra = value
            if reply.tool_calls:
                yield chunk({"tool_calls": [{"index": i, **c.to_message()} for i, c in enumerate(reply.tool_calls)]})
            if include_usage:
                yield chunk({}, reply.finish_reason, **extra)
                done = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": name,
                        "choices": [], "usage": _usage(reply)}
                yield f"data: {json.dumps(done)}\n\n"
            else:
                yield chunk({}, reply.finish_reason, usage=_usage(reply), **extra)
    except OnecardError as e:
        yield f"data: {json.dumps({'error': _oai_body(e)})}\n\n"
    except Exception as e:
        log.exception("error in a /v1 stream", exc_info=e)
        error = {"message": f"internal error ({type(e).__name__}: {e}); the server is still up",
                 "type": "server_error", "param": None, "code": None}
        yield f"data: {json.dumps({'error': error})}\n\n"
    yield "data: [DONE]\n\n"

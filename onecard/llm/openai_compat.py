"""Any OpenAI-compatible server (vLLM, llama-server, LM Studio, SGLang) through the `openai` client.

The server holds the model and its memory settings (vLLM's `--gpu-memory-utilization`, `--max-model-len`;
`onecard fit --runtime vllm` predicts them). JSON schemas go as `response_format` json_schema, which vLLM,
llama-server and LM Studio constrain with a grammar. Image parts go as data URLs (a server cannot read our files).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

from onecard.core.errors import ModelNotFoundError, OnecardError
from onecard.llm.base import (
    Backend,
    BackendUnavailableError,
    Capabilities,
    Clock,
    ContextOverflowError,
    LLMError,
    Reply,
    Request,
    ToolCall,
    parse_arguments,
)
from onecard.llm.images import with_data_urls

__all__ = ["OpenAIBackend", "DEFAULT_URL"]

DEFAULT_URL = "http://localhost:8000/v1"  # vLLM's `vllm serve` default


class OpenAIBackend(Backend):
    """A model behind an OpenAI-compatible /v1/chat/completions endpoint."""

    name = "openai"
    capabilities = Capabilities(streaming=True, tools=True, json_schema=True, vision=True,
                                notes=("tools and JSON schema: the server's (vLLM, llama-server, LM Studio)",
                                       "images: as data URLs, for a server that runs a vision model"))

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout_s: float = 600.0) -> None:
        from onecard.core.extras import require

        openai = require("openai", "llm")
        super().__init__(model)
        self.url = (base_url or DEFAULT_URL).rstrip("/")
        key = api_key or os.environ.get("OPENAI_API_KEY") or "not-needed"  # local servers ignore it
        self._openai = openai
        self._client = openai.OpenAI(base_url=self.url, api_key=key, timeout=timeout_s, max_retries=0)
        self.settings = {"model": model, "base_url": self.url}
        self.notes = ["the server holds the model and chooses its memory settings"]

    def close(self) -> None:
        self._client.close()

    def _generate(self, request: Request) -> Generator[str, None, Reply]:
        clock = Clock()
        kwargs: dict[str, Any] = {"model": self.model, "messages": with_data_urls(request.messages),
                                  "temperature": request.temperature, "max_tokens": request.max_tokens}
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.tools:
            kwargs["tools"] = request.tools
            kwargs["tool_choice"] = request.tool_choice
        if request.json_schema is not None:
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "reply", "schema": request.json_schema}}
        text: list[str] = []
        parts: dict[int, dict[str, str]] = {}  # streamed tool calls arrive in pieces, keyed by index
        usage: Any = None
        finish = "stop"
        try:
            if not request.stream:
                out = self._client.chat.completions.create(**kwargs)
                clock.tick()
                choice = out.choices[0]
                for i, call in enumerate(choice.message.tool_calls or []):
                    parts[i] = {"id": call.id, "name": call.function.name, "arguments": call.function.arguments}
                if choice.message.content:
                    text.append(choice.message.content)
                    yield choice.message.content
                usage, finish = out.usage, choice.finish_reason or finish
            else:
                stream = self._client.chat.completions.create(stream=True, stream_options={"include_usage": True},
                                                              **kwargs)
                for chunk in stream:
                    usage = chunk.usage or usage
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    finish = choice.finish_reason or finish
                    for call in choice.delta.tool_calls or []:
                        part = parts.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                        part["id"] = call.id or part["id"]
                        if call.function is not None:
                            part["name"] += call.function.name or ""
                            part["arguments"] += call.function.arguments or ""
                    if choice.delta.content:
                        clock.tick()
                        text.append(choice.delta.content)
                        yield choice.delta.content
        except self._openai.APIConnectionError as e:
            raise BackendUnavailableError(
                f"no OpenAI-compatible server answers at {self.url} ({e.__cause__ or e})",
                "start the server (e.g. `vllm serve MODEL` or `llama-server -m FILE.gguf --port 8000`), "
                "or pass --base-url where it runs") from None
        except self._openai.APIStatusError as e:
            raise self._status_error(e) from None
        calls = [ToolCall(p["id"] or f"call_{i}", p["name"], parse_arguments(p["arguments"]))
                 for i, p in sorted(parts.items())]
        reply = Reply("".join(text), calls, getattr(usage, "prompt_tokens", 0) or 0,
                      getattr(usage, "completion_tokens", 0) or 0, finish_reason=finish)
        return clock.done(reply)

    def _status_error(self, error: Any) -> OnecardError:
        message = str(error.message if hasattr(error, "message") else error)
        if error.status_code == 404:
            return ModelNotFoundError(f"the server at {self.url} has no model {self.model!r} ({message})",
                                      f"pass --model with a name from {self.url}/models")
        if "context" in message.lower() and ("length" in message.lower() or "window" in message.lower()):
            return ContextOverflowError(f"the conversation is longer than the server's context ({message})",
                                        "start the server with a longer context (vLLM: --max-model-len, llama-server:"
                                        " -c), shorten the input, or /reset the chat")
        return LLMError(f"the server at {self.url} answered HTTP {error.status_code}: {message}")

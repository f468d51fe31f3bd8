"""A running Ollama, through its HTTP API (/api/chat, /api/tags): Ollama picks the GPU layers itself.

Tools, JSON schemas (`format`) and images (`images`) are Ollama's own; a model without tool or vision support is
refused by Ollama with a message that is passed on.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Generator
from typing import Any

from onecard.core.errors import ModelNotFoundError, OnecardError
from onecard.llm.base import (
    Backend,
    BackendUnavailableError,
    Capabilities,
    Clock,
    LLMError,
    Message,
    Reply,
    Request,
    ToolCall,
    UnsupportedError,
    parse_arguments,
)
from onecard.llm.images import image_bytes, image_urls, text_of

__all__ = ["OllamaBackend", "default_url", "list_models"]


def default_url() -> str:
    """$OLLAMA_HOST (as Ollama reads it), else Ollama's default address."""
    host = os.environ.get("OLLAMA_HOST", "").strip() or "http://localhost:11434"
    return host if "://" in host else f"http://{host}"


def _unreachable(url: str, error: Exception) -> BackendUnavailableError:
    return BackendUnavailableError(f"Ollama is not running at {url} ({type(error).__name__}: {error})",
                                   "start it with `ollama serve` (or the Ollama app), or pass --base-url where it runs")


def list_models(base_url: str | None = None, timeout_s: float = 2.0) -> list[dict[str, Any]]:
    """The models a running Ollama has (`ollama list`): name, size in bytes, quantization, parameter size."""
    import httpx

    url = (base_url or default_url()).rstrip("/")
    try:
        response = httpx.get(f"{url}/api/tags", timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as e:
        raise _unreachable(url, e) from None
    return [{"name": m["name"], "size": m.get("size"), "quant": (m.get("details") or {}).get("quantization_level"),
             "params": (m.get("details") or {}).get("parameter_size")} for m in response.json().get("models", [])]


class OllamaBackend(Backend):
    """A model served by Ollama."""

    name = "ollama"
    capabilities = Capabilities(streaming=True, tools=True, json_schema=True, vision=True,
                                notes=("tools: Ollama's (models with tool support)", "JSON schema: Ollama's format",
                                       "images: Ollama's vision models (llava, llama3.2-vision, gemma3)"))

    def __init__(self, model: str, *, base_url: str | None = None, ctx: int | None = None, timeout_s: float = 600.0
                 ) -> None:
        import httpx

        super().__init__(model)
        self.url = (base_url or default_url()).rstrip("/")
        self.ctx = ctx
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=5.0))
        self.settings = {"model": model, "base_url": self.url, "ctx": ctx or "Ollama's default"}
        self.notes = ["Ollama chooses the GPU layers itself"]

    def close(self) -> None:
        self._client.close()

    def _generate(self, request: Request) -> Generator[str, None, Reply]:
        import httpx

        clock = Clock()
        options: dict[str, Any] = {"temperature": request.temperature, "num_predict": request.max_tokens}
        if request.seed is not None:
            options["seed"] = request.seed
        if self.ctx:
            options["num_ctx"] = self.ctx
        body: dict[str, Any] = {"model": self.model, "messages": [_to_ollama(m) for m in request.messages],
                                "stream": request.stream, "options": options}
        if request.tools and request.tool_choice != "none":  # Ollama has no tool_choice
            body["tools"] = request.tools
            body["stream"] = False  # tool calls arrive whole
        if request.json_schema is not None:
            body["format"] = request.json_schema
        text: list[str] = []
        calls: list[ToolCall] = []
        last: dict[str, Any] = {}
        try:
            with self._client.stream("POST", f"{self.url}/api/chat", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._http_error(response.status_code, response.text)
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    last = json.loads(line)
                    if "error" in last:
                        raise LLMError(f"Ollama failed while answering: {last['error']}")
                    message = last.get("message") or {}
                    for i, call in enumerate(message.get("tool_calls") or []):
                        fn = call["function"]
                        calls.append(ToolCall(call.get("id") or f"call_{len(calls) + i}", fn["name"],
                                              parse_arguments(fn.get("arguments"))))
                    if message.get("content"):
                        clock.tick()
                        text.append(message["content"])
                        yield message["content"]
        except httpx.TransportError as e:
            raise _unreachable(self.url, e) from None
        finish = "tool_calls" if calls else last.get("done_reason") or "stop"
        return clock.done(Reply("".join(text), calls, int(last.get("prompt_eval_count") or 0),
                                int(last.get("eval_count") or 0), finish_reason=finish))

    def _http_error(self, status: int, body: str) -> OnecardError:
        try:
            error = str(json.loads(body).get("error", body))
        except (json.JSONDecodeError, AttributeError):
            error = body
        if status == 404 or "not found" in error:
            return ModelNotFoundError(f"Ollama at {self.url} has no model {self.model!r} ({error})",
                                      f"pull it with `ollama pull {self.model}`; `onecard llm list` shows what it has")
        if "does not support tools" in error:
            return UnsupportedError(f"Ollama model {self.model!r} does not support tools ({error})",
                                    "use a model with tool support, e.g. llama3.1:8b or qwen2.5:7b")
        if "missing data required for image input" in error or "does not support images" in error:
            return UnsupportedError(f"Ollama model {self.model!r} cannot read images ({error})",
                                    "use a vision model, e.g. `ollama pull llava:7b` or gemma3:4b")
        return LLMError(f"Ollama at {self.url} answered HTTP {status}: {error}")


def _to_ollama(message: Message) -> Message:
    """OpenAI-style tool calls carry their arguments as a JSON string; Ollama's as an object. Image parts become
    Ollama's `images`: a list of base64 strings (no data: prefix) beside the text content."""
    if isinstance(message.get("content"), list):
        images = [base64.b64encode(image_bytes(url)).decode("ascii") for url in image_urls([message])]
        return {**message, "content": text_of(message["content"]), "images": images}
    if not message.get("tool_calls"):
        return message
    calls = [{"function": {"name": c["function"]["name"], "arguments": parse_arguments(c["function"]["arguments"])}}
             for c in message["tool_calls"]]
    return {**message, "tool_calls": calls}

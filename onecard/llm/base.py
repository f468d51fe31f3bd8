"""The one interface: OpenAI-style messages in; a `Reply` (text, tool calls, token counts, timings) out, or a `Stream`.

A backend subclasses `Backend` and writes `_generate`, a generator that yields text chunks and returns the `Reply`.
`capabilities` says up front what the backend cannot do, and `chat`/`stream` refuse such a request before any work.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from onecard.llm.errors import (
    BackendUnavailableError,
    ContextOverflowError,
    InvalidOutputError,
    LLMError,
    UnsupportedError,
)
from onecard.llm.images import has_images, normalize
from onecard.llm.schema import check_schema, validate

__all__ = [
    "Message", "ToolChoice", "ToolCall", "Reply", "Stream", "Request", "Capabilities", "Backend", "Clock",
    "drain", "parse_arguments",
    "LLMError", "BackendUnavailableError", "ContextOverflowError", "UnsupportedError", "InvalidOutputError",
]

# {"role": "system"|"user"|"assistant"|"tool", "content": str | [parts], ...} as in the OpenAI API; parts are
# {"type": "text", "text": ...} and {"type": "image_url", "image_url": {"url": data URL or file path}} (`images`).
Message = dict[str, Any]
ToolChoice = Literal["auto", "none", "required"]


@dataclass(frozen=True)
class ToolCall:
    """A call the model asks for: `arguments` already parsed from JSON."""

    id: str
    name: str
    arguments: dict[str, Any]

    def to_message(self) -> dict[str, Any]:
        """The OpenAI `tool_calls` entry for the assistant message that carries this call."""
        import json

        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments)}}


@dataclass
class Reply:
    """A finished answer. Timings are wall-clock seconds from the call; speeds follow from them.

    prompt_tokens / ttft_s is the prompt speed (the prompt's evaluation plus the first token), and
    (completion_tokens - 1) / (total_s - ttft_s) the generation speed.
    """

    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float = 0.0
    total_s: float = 0.0
    finish_reason: str = "stop"

    @property
    def prompt_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.ttft_s if self.ttft_s > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        """Generation speed: tokens after the first over the time after the first."""
        gen_s = self.total_s - self.ttft_s
        return (self.completion_tokens - 1) / gen_s if self.completion_tokens > 1 and gen_s > 0 else 0.0

    def message(self) -> Message:
        """The assistant message to append to the history."""
        out: Message = {"role": "assistant", "content": self.text}
        if self.tool_calls:
            out["tool_calls"] = [c.to_message() for c in self.tool_calls]
        return out

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "tool_calls": [vars(c) for c in self.tool_calls],
                "finish_reason": self.finish_reason, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "ttft_s": round(self.ttft_s, 4),
                "total_s": round(self.total_s, 4), "prompt_tokens_per_s": round(self.prompt_tokens_per_s, 1),
                "tokens_per_s": round(self.tokens_per_s, 1)}


class Stream:
    """Text chunks as they come; `reply` holds the finished `Reply` once the stream is exhausted."""

    def __init__(self, chunks: Generator[str, None, Reply]) -> None:
        self._chunks = chunks
        self.reply: Reply | None = None

    def __iter__(self) -> Iterator[str]:
        self.reply = yield from self._chunks


class Clock:
    """Measures time to first token and total time of one call."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None

    def tick(self) -> None:
        """Call on each chunk of text; the first call marks the first token."""
        if self.first is None:
            self.first = time.perf_counter()

    def done(self, reply: Reply) -> Reply:
        end = time.perf_counter()
        reply.total_s = end - self.start
        reply.ttft_s = (self.first or end) - self.start
        return reply


@dataclass
class Request:
    """One call's inputs, as a backend's `_generate` gets them."""

    messages: list[Message]
    tools: list[dict[str, Any]] | None
    tool_choice: ToolChoice
    json_schema: dict[str, Any] | None
    temperature: float
    max_tokens: int
    seed: int | None
    stream: bool


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; a request for anything else is refused before it starts."""

    streaming: bool = True
    tools: bool = False
    json_schema: bool = False
    token_counts: bool = True
    vision: bool = False  # reads image content parts
    notes: tuple[str, ...] = ()  # how each capability is provided, or why it is missing


class Backend:
    """A loaded model behind one runtime. `settings` are the values chosen for it (printed by the CLI)."""

    name = "backend"
    capabilities = Capabilities()

    def __init__(self, model: str) -> None:
        self.model = model
        self.settings: dict[str, Any] = {}
        self.notes: list[str] = []

    def chat(self, messages: list[Message], *, tools: list[dict[str, Any]] | None = None,
             tool_choice: ToolChoice = "auto", json_schema: dict[str, Any] | None = None, temperature: float = 0.2,
             max_tokens: int = 512, seed: int | None = None) -> Reply:
        """Answer `messages`; with `tools` (OpenAI tool schemas) the reply may hold tool calls instead of text.

        `tool_choice` "none" keeps the tools in view but asks for an answer; "required" asks for a call.

        Raises:
            ConfigError: `json_schema` is not a usable schema (checked before any generation).
            InvalidOutputError: with `json_schema`, the reply does not validate or was cut off at `max_tokens`; with
                `tools`, a call was cut off.
        """
        request = Request(messages, tools or None, tool_choice, json_schema, temperature, max_tokens, seed, False)
        return drain(self._start(request))

    def stream(self, messages: list[Message], *, tools: list[dict[str, Any]] | None = None,
               tool_choice: ToolChoice = "auto", json_schema: dict[str, Any] | None = None, temperature: float = 0.2,
               max_tokens: int = 512, seed: int | None = None) -> Stream:
        """Like `chat`, but the text comes chunk by chunk; iterate it, then read `.reply`.

        With `json_schema` the chunks may end in InvalidOutputError: show the text once `.reply` is set.
        """
        request = Request(messages, tools or None, tool_choice, json_schema, temperature, max_tokens, seed, True)
        return Stream(self._start(request))

    def close(self) -> None:
        """Free the model (embedded backends) or the connection."""

    def _start(self, request: Request) -> Generator[str, None, Reply]:
        caps = self.capabilities
        for wanted, can, what in ((request.tools, caps.tools, "call tools"),
                                  (request.json_schema, caps.json_schema, "constrain replies to a JSON schema")):
            if wanted and not can:
                raise UnsupportedError(f"the {self.name} backend cannot {what} ({'; '.join(caps.notes)})",
                                       "use --backend llamacpp, ollama or openai for tools and JSON schemas")
        if not request.messages:
            raise LLMError("no messages to answer", "pass at least one user message")
        request.messages = normalize(request.messages)
        if not caps.vision and has_images(request.messages):
            raise UnsupportedError(
                f"the {self.name} backend with {self.model} cannot read images "
                f"({'; '.join(caps.notes) or 'a text-only model'})",
                "use a vision model: --backend transformers with a LLaVA-style model, --backend llamacpp with "
                "--mmproj FILE, or an Ollama vision model (--backend ollama --model llava)")
        if request.json_schema is not None:
            check_schema(request.json_schema)
        request.stream = request.stream and caps.streaming
        return _checked(request, self._generate(request))

    def _generate(self, request: Request) -> Generator[str, None, Reply]:
        """Yield the reply's text as it comes and return the `Reply` (with tool calls, tokens and timings)."""
        raise NotImplementedError


def _checked(request: Request, chunks: Generator[str, None, Reply]) -> Generator[str, None, Reply]:
    """The backend's chunks, then its reply if it is whole: every backend's JSON goes through the same checks."""
    reply = yield from chunks
    cut = reply.finish_reason == "length"
    if request.json_schema is not None:
        if cut:
            raise InvalidOutputError(
                f"the reply was cut off at the token limit ({request.max_tokens} tokens) before its JSON was "
                f"complete: {reply.text[-200:]!r}",
                "raise --max-tokens, or give the schema's long strings a maxLength and its arrays a maxItems")
        validate(reply.text, request.json_schema)
    elif cut and reply.tool_calls:
        raise InvalidOutputError(f"the tool call was cut off at the token limit ({request.max_tokens} tokens)",
                                 "raise max_tokens, or bound the tool's string arguments with maxLength")
    return reply


def drain(chunks: Generator[str, None, Reply]) -> Reply:
    """Run a `_generate` generator to its end and return its `Reply`."""
    while True:
        try:
            next(chunks)
        except StopIteration as stop:
            reply: Reply = stop.value
            return reply


def parse_arguments(raw: str | dict[str, Any] | None) -> dict[str, Any]:
    """A tool call's arguments as a dict, from the JSON string OpenAI-style servers send (or a dict, as Ollama's)."""
    import json

    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return {"_raw": raw}
    return parsed if isinstance(parsed, dict) else {"value": parsed}

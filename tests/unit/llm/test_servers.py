"""Ollama and OpenAI-compatible backends against local servers that speak their wire formats (see conftest)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from onecard.core.errors import ConfigError, ModelNotFoundError
from onecard.llm import BackendUnavailableError, ContextOverflowError, InvalidOutputError, LLMConfig, load
from onecard.llm.catalog import list_local
from onecard.llm.ollama import OllamaBackend
from onecard.llm.openai_compat import OpenAIBackend
from tests.unit.llm.conftest import CALL, CUT, REPLY, MockServer

ASK = [{"role": "user", "content": "What is the capital of France?"}]
TOOLS = [{"type": "function", "function": {"name": "add", "description": "add two integers",
                                           "parameters": {"type": "object", "properties": {}}}}]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def _ollama(server: MockServer, model: str = "llama3.1:8b") -> OllamaBackend:
    backend = load(LLMConfig(backend="ollama", model=model, base_url=server.url, ctx=8192))
    assert isinstance(backend, OllamaBackend)
    return backend


def _openai(server: MockServer, model: str = "Qwen/Qwen2.5-7B-Instruct") -> OpenAIBackend:
    backend = load(LLMConfig(backend="openai", model=model, base_url=f"{server.url}/v1"))
    assert isinstance(backend, OpenAIBackend)
    return backend


def test_ollama_streams_the_same_text_as_chat_with_counts(mock_server: MockServer) -> None:
    backend = _ollama(mock_server)
    stream = backend.stream(ASK, temperature=0, max_tokens=64, seed=1)
    assert list(stream) == REPLY
    reply = backend.chat(ASK, temperature=0)
    assert stream.reply is not None and stream.reply.text == reply.text == "The capital of France is Paris."
    assert (reply.prompt_tokens, reply.completion_tokens) == (26, 8)
    assert stream.reply.ttft_s > 0 and stream.reply.total_s >= stream.reply.ttft_s
    sent = mock_server.requests[-2]
    assert sent["options"] == {"temperature": 0, "num_predict": 64, "seed": 1, "num_ctx": 8192} and sent["stream"]


def test_ollama_tools_and_schema_are_sent_its_way(mock_server: MockServer) -> None:
    backend = _ollama(mock_server)
    reply = backend.chat(ASK, tools=TOOLS)
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [(CALL["name"], CALL["arguments"])]
    assert reply.finish_reason == "tool_calls"
    # the call goes back into the history with its arguments as an object, as Ollama wants them
    answer = backend.chat([*ASK, reply.message(), {"role": "tool", "content": "42"}], json_schema=SCHEMA)
    assert json.loads(answer.text) == {"city": "Paris"}
    sent = mock_server.requests[-1]
    assert sent["format"] == SCHEMA and sent["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"a": 17,
                                                                                                        "b": 25}


def test_ollama_unknown_model_says_ollama_pull(mock_server: MockServer) -> None:
    with pytest.raises(ModelNotFoundError, match="ollama pull qwen9:1b"):
        _ollama(mock_server, "qwen9:1b").chat(ASK)


def test_ollama_not_running_says_ollama_serve(closed_port_url: str) -> None:
    backend = load(LLMConfig(backend="ollama", model="llama3.1:8b", base_url=closed_port_url))
    with pytest.raises(BackendUnavailableError, match="ollama serve") as e:
        backend.chat(ASK)
    assert closed_port_url in str(e.value)


def test_openai_streams_the_same_text_as_chat_with_usage(mock_server: MockServer) -> None:
    backend = _openai(mock_server)
    stream = backend.stream(ASK, temperature=0)
    assert list(stream) == REPLY
    reply = backend.chat(ASK, temperature=0)
    assert stream.reply is not None and stream.reply.text == reply.text == "".join(REPLY)
    assert (stream.reply.prompt_tokens, stream.reply.completion_tokens) == (26, 8) == (reply.prompt_tokens,
                                                                                       reply.completion_tokens)
    assert mock_server.requests[-2]["stream_options"] == {"include_usage": True}


def test_openai_tool_call_pieces_are_joined_and_schema_sent(mock_server: MockServer) -> None:
    backend = _openai(mock_server)
    for reply in (backend.chat(ASK, tools=TOOLS), backend.stream(ASK, tools=TOOLS)):
        if not hasattr(reply, "tool_calls"):
            list(reply)
            reply = reply.reply
        assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [("call_1", "add", CALL["arguments"])]
    assert json.loads(backend.chat(ASK, json_schema=SCHEMA).text) == {"city": "Paris"}
    assert mock_server.requests[-1]["response_format"] == {"type": "json_schema",
                                                           "json_schema": {"name": "reply", "schema": SCHEMA}}


@pytest.mark.parametrize("make", [_ollama, _openai])
def test_server_replies_that_break_the_schema_or_are_cut_are_errors(mock_server: MockServer, make: Any) -> None:
    backend = make(mock_server)
    both = {**SCHEMA, "required": ["city", "country"]}
    for stream in (False, True):
        with pytest.raises(InvalidOutputError, match="at \\(top level\\): 'country' is a required property"):
            _answer(backend, both, 64, stream)
        with pytest.raises(InvalidOutputError, match=f"cut off at the token limit \\({CUT - 1} tokens\\)"):
            _answer(backend, SCHEMA, CUT - 1, stream)
    sent = len(mock_server.requests)
    with pytest.raises(ConfigError, match="'#/\\$defs/city' points to nothing"):
        backend.chat(ASK, json_schema={"$ref": "#/$defs/city"})
    assert len(mock_server.requests) == sent  # refused before any request


def _answer(backend: Any, schema: dict[str, Any], max_tokens: int, stream: bool) -> str:
    if not stream:
        return str(backend.chat(ASK, json_schema=schema, max_tokens=max_tokens).text)
    return "".join(backend.stream(ASK, json_schema=schema, max_tokens=max_tokens))


def test_openai_errors_name_the_url_the_model_and_the_context(mock_server: MockServer, closed_port_url: str) -> None:
    with pytest.raises(BackendUnavailableError, match=f"{closed_port_url}/v1"):
        load(LLMConfig(backend="openai", model="m", base_url=f"{closed_port_url}/v1")).chat(ASK)
    with pytest.raises(ModelNotFoundError, match="no model 'gpt-9'"):
        _openai(mock_server, "gpt-9").chat(ASK)
    with pytest.raises(ContextOverflowError, match="--max-model-len"):
        _openai(mock_server).chat([{"role": "user", "content": "word " * 1000}])


def test_llm_list_has_the_shipped_model_gguf_folders_and_ollama(mock_server: MockServer, tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "Llama-3.1-8B-Instruct-Q4_K_M.gguf").write_bytes(b"GGUF" + bytes(1020))
    models = {m["ref"]: m for m in list_local(mock_server.url, folders=[tmp_path])}
    assert models["smollm2-135m-instruct"]["backend"] == "llamacpp"
    assert str(tmp_path / "sub" / "Llama-3.1-8B-Instruct-Q4_K_M.gguf") in models
    assert models["llama3.1:8b"]["backend"] == "ollama" and models["llama3.1:8b"]["size_gib"] == 4.58


def test_a_server_backend_needs_a_model_name() -> None:
    from onecard.core.errors import ConfigError

    with pytest.raises(ConfigError, match="--model llama3.1:8b"):
        load(LLMConfig(backend="ollama"))

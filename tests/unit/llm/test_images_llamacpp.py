"""llama.cpp with a multimodal projector (`--mmproj`), with llama-cpp-python's Llama and chat handlers replaced by
fakes: no vision GGUF is on PyPI. What is checked is what onecard hands llama-cpp-python: the handler it picks, the
projector path, GPU use, and image parts as data URLs (its `_load_image` reads `data:` URLs, not file paths).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from onecard.core.errors import ModelNotFoundError
from onecard.llm import LLMConfig, LLMError, UnsupportedError, load
from onecard.llm.images import user_message

llama_cpp = pytest.importorskip("llama_cpp")
from llama_cpp import llama_chat_format  # noqa: E402

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAAB"
                       "JRU5ErkJggg==")  # a 1 x 1 PNG


class FakeLlama:
    metadata: dict[str, Any] = {}

    def __init__(self, path: str, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.n_tokens = 0
        self.chat_handler: Any = None
        self.messages: list[dict[str, Any]] = []

    def create_chat_completion(self, messages: list[dict[str, Any]], stream: bool, **kwargs: Any
                               ) -> Iterator[dict[str, Any]]:
        self.messages = messages
        self.n_tokens = 600  # the prompt with one image's 576 tokens, as llava-1.5 evaluates it
        for piece in ["A red", " square."]:
            yield {"choices": [{"delta": {"content": piece}, "finish_reason": None}]}
            self.n_tokens += 1
        yield {"choices": [{"delta": {}, "finish_reason": "stop"}]}

    def close(self) -> None:
        pass


class FakeHandler:
    def __init__(self, clip_model_path: str, verbose: bool = True, use_gpu: bool = True) -> None:
        self.path, self.use_gpu = clip_model_path, use_gpu


class FakeMTMD(FakeHandler):
    pass


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    monkeypatch.setattr(llama_cpp, "Llama", FakeLlama)
    monkeypatch.setattr(llama_chat_format, "Llava15ChatHandler", FakeHandler)
    monkeypatch.setattr(llama_chat_format, "MTMDChatHandler", FakeMTMD)
    model, mmproj = tmp_path / "llava-v1.5-7b-Q4_K_M.gguf", tmp_path / "mmproj-model-f16.gguf"
    image = tmp_path / "a.png"
    model.write_bytes(b"GGUF" + bytes(8))
    mmproj.write_bytes(b"GGUF" + bytes(8))
    image.write_bytes(PNG)
    return model, mmproj, image


def test_mmproj_reads_images_as_data_urls_on_the_cpu(files: tuple[Path, Path, Path]) -> None:
    model, mmproj, image = files
    backend = load(LLMConfig(model=str(model), mmproj=mmproj, ctx=2048, gpu_layers=0))
    handler = backend._llm.chat_handler  # type: ignore[attr-defined]
    assert type(handler) is FakeHandler and handler.path == str(mmproj) and backend.capabilities.vision
    assert backend.settings["mmproj"] == str(mmproj)
    stream = backend.stream([user_message("what shape?", [image, image])], temperature=0)
    assert "".join(stream) == "A red square." and stream.reply is not None
    assert (stream.reply.prompt_tokens, stream.reply.completion_tokens) == (600, 2)
    sent = backend._llm.messages[0]["content"]  # type: ignore[attr-defined]
    url = f"data:image/png;base64,{base64.b64encode(PNG).decode()}"
    assert sent == [{"type": "image_url", "image_url": {"url": url}}] * 2 + [{"type": "text", "text": "what shape?"}]


def test_a_model_with_a_chat_template_uses_it_and_the_gpu(files: tuple[Path, Path, Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from onecard.llm.llamacpp import LlamaCppBackend

    model, mmproj, _ = files
    monkeypatch.setattr(FakeLlama, "metadata", {"tokenizer.chat_template": "{{ messages }}"})
    backend = LlamaCppBackend(model, ctx=2048, gpu_layers=20, mmproj=mmproj)
    handler = backend._llm.chat_handler
    assert type(handler) is FakeMTMD and handler.use_gpu
    notes = load(LLMConfig(model=str(model), mmproj=mmproj, ctx=2048, gpu_layers=20)).notes
    assert any("projector mmproj-model-f16.gguf" in n and "outside fit's plan" in n for n in notes)


def test_without_mmproj_images_are_refused_and_a_missing_one_is_named(files: tuple[Path, Path, Path]) -> None:
    model, mmproj, image = files
    backend = load(LLMConfig(model=str(model), ctx=2048, gpu_layers=0))
    with pytest.raises(UnsupportedError, match="--mmproj FILE"):
        backend.chat([user_message("what shape?", [image])])
    with pytest.raises(ModelNotFoundError, match="projector file .*nope.gguf does not exist"):
        load(LLMConfig(model=str(model), mmproj=mmproj.parent / "nope.gguf", ctx=2048, gpu_layers=0))
    (mmproj.parent / "fake.gguf").write_bytes(b"PK\x03\x04")
    with pytest.raises(LLMError, match="is not a GGUF file"):
        load(LLMConfig(model=str(model), mmproj=mmproj.parent / "fake.gguf", ctx=2048, gpu_layers=0))

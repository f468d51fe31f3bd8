"""The transformers backend on a tiny random LLaVA (`onecard.vlm.tiny`: 16 image tokens per 64 px image): the
answer is noise, but it streams, its tokens are counted with every image's tokens, and the REPL adds images."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from onecard.llm import LLMConfig, load
from onecard.llm.base import Backend
from onecard.llm.chat import Chat, repl
from onecard.llm.config import ChatConfig
from onecard.llm.images import data_url, user_message

pytest.importorskip("transformers")
pytest.importorskip("torch")
IMAGE_TOKENS = 16  # (64 px / 16 px patches)^2, CLS dropped


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from onecard.vlm.synthetic import make_image

    folder = tmp_path_factory.mktemp("images")
    paths = [folder / "a.png", folder / "b.png"]
    make_image([("red", "square", "top left")]).save(paths[0])
    make_image([("blue", "circle", "bottom right")]).save(paths[1])
    return paths


@pytest.fixture(scope="module")
def llava(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    from onecard.vlm.tiny import make_tiny_llava

    folder = make_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))
    yield load(LLMConfig(backend="transformers", model=str(folder)))


def test_streams_and_counts_every_image(llava: Backend, images: list[Path]) -> None:
    assert llava.capabilities.vision and llava.settings["quant"] == "fp32"
    assert llava.settings["ctx"] == 512  # the language model's (text_config) length, not a default
    counts = []
    for shown in ([], images[:1], images):
        stream = llava.stream([user_message("what colour is the square?", shown)], temperature=0, max_tokens=6)
        pieces = list(stream)
        assert stream.reply is not None and stream.reply.text == "".join(pieces)
        assert pieces and stream.reply.completion_tokens == 6 and stream.reply.finish_reason == "length"
        counts.append(stream.reply.prompt_tokens)
    assert counts[1] - counts[0] == counts[2] - counts[1] == IMAGE_TOKENS  # the word-level tokenizer drops "\n"
    same = llava.chat([user_message("what colour is the square?", [data_url(str(images[0]))])], temperature=0,
                      max_tokens=6)
    assert same.prompt_tokens == counts[1]  # a data URL is the same image as its file


def test_repl_adds_images_to_the_next_turn(llava: Backend, images: list[Path]) -> None:
    chat = Chat(llava, ChatConfig(system="", max_tokens=4))
    lines = iter([f"/image {images[0]}", "/image nope.png", "what colour is the square?", "and now?", "/exit"])
    said: list[str] = []
    assert repl(chat, lines, io.StringIO(), said.append, images=[images[1]]) == 0
    users = [m for m in chat.history if m["role"] == "user"]
    assert [p["image_url"]["url"] for p in users[0]["content"][:-1]] == [str(images[1]), str(images[0])]
    assert users[1]["content"] == "and now?"  # images go with one turn only
    assert "/image PATH" in said[0] and "no image file 'nope.png'" in said


@pytest.mark.gpu
def test_nf4_on_cuda_keeps_the_vision_tower_16_bit(images: list[Path], tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb
    import torch

    from onecard.vlm.tiny import make_tiny_llava

    backend = load(LLMConfig(backend="transformers", model=str(make_tiny_llava(tmp_path / "tiny")), quant="nf4"))
    lm = backend.lm  # type: ignore[attr-defined]
    assert isinstance(lm.get_submodule("model.language_model.layers.0.self_attn.q_proj"), bnb.nn.Linear4bit)
    tower = lm.get_submodule("model.vision_tower.encoder.layers.0.self_attn.q_proj")
    assert type(tower) is torch.nn.Linear and tower.weight.dtype == torch.bfloat16
    reply = backend.chat([user_message("what colour is the square?", images)], temperature=0, max_tokens=4)
    assert reply.completion_tokens == 4 and reply.prompt_tokens > 2 * IMAGE_TOKENS

"""The transformers backend on the shipped SmolLM2 GGUF (transformers dequantizes it to fp32 on the CPU).

The 4-bit path needs CUDA and bitsandbytes: on a GPU machine, `-m gpu` runs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from onecard.llm import LLMConfig, LLMError, UnsupportedError, load
from onecard.llm.base import Backend
from onecard.llm.config import DEFAULT_SYSTEM

pytest.importorskip("transformers")
pytest.importorskip("torch")

ASK = [{"role": "system", "content": DEFAULT_SYSTEM}, {"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def hf(smollm2_path: Path) -> Iterator[Backend]:
    backend = load(LLMConfig(backend="transformers", model=str(smollm2_path), ctx=512))
    yield backend


@pytest.mark.slow
def test_answers_paris_streamed_and_counted(hf: Backend) -> None:
    assert hf.settings["quant"] == "fp32" and hf.settings["device"] == "cpu"
    stream = hf.stream(ASK, temperature=0, max_tokens=16)
    text = "".join(stream)
    assert stream.reply is not None and "Paris" in text and text == stream.reply.text
    assert stream.reply.prompt_tokens > 10 and stream.reply.completion_tokens > 3 and stream.reply.tokens_per_s > 0
    assert hf.chat(ASK, temperature=0, max_tokens=16).text == text


@pytest.mark.slow
def test_says_up_front_it_has_no_tools_or_schemas(hf: Backend) -> None:
    assert not hf.capabilities.tools and not hf.capabilities.json_schema
    with pytest.raises(UnsupportedError, match="--backend llamacpp"):
        hf.chat(ASK, json_schema={"type": "object"})


def test_4bit_without_cuda_is_a_clear_error(smollm2_path: Path) -> None:
    from onecard.core import device

    if device.supports_4bit():
        pytest.skip("this machine can load 4-bit weights")
    with pytest.raises(LLMError, match="need an NVIDIA GPU and bitsandbytes"):
        load(LLMConfig(backend="transformers", model=str(smollm2_path), quant="nf4"))


@pytest.mark.gpu
def test_nf4_on_cuda_answers(smollm2_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    backend = load(LLMConfig(backend="transformers", model=str(smollm2_path), quant="nf4", ctx=512))
    assert backend.settings["quant"] == "nf4" and "Paris" in backend.chat(ASK, temperature=0, max_tokens=16).text

"""Context, GPU layers and weight format come from `onecard fit`; without a GPU everything stays on the CPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from onecard.llm.fitting import fit_llamacpp, fit_transformers


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("onecard.core.device.local_gpu", lambda: None)


def test_cpu_only_puts_no_layer_on_a_gpu(smollm2_path: Path) -> None:
    fitted = fit_llamacpp(smollm2_path)
    assert (fitted.ctx, fitted.gpu_layers, fitted.card) == (4096, 0, None)
    assert "no GPU found" in fitted.notes[0]


def test_on_a_4070ti_the_small_model_goes_whole_with_the_longest_context(smollm2_path: Path) -> None:
    fitted = fit_llamacpp(smollm2_path, gpu="4070ti")
    assert fitted.ctx == 8192 and fitted.gpu_layers == 31  # 30 layers + the output layer
    assert "4070 Ti" in fitted.notes[0] and "30/30 layers" in fitted.notes[0]


def test_what_the_user_sets_is_kept(smollm2_path: Path) -> None:
    assert (fit_llamacpp(smollm2_path, ctx=2048, gpu_layers=5).ctx, 5) == (2048, 5)
    fitted = fit_llamacpp(smollm2_path, ctx=2048, gpu="4070ti")
    assert fitted.ctx == 2048 and fitted.gpu_layers == 31


def test_transformers_quant_follows_the_card(set_margins: Callable[[float], None]) -> None:
    set_margins(0.1)  # which quant fits turns on the bound: fixed here, not bounds.json's of the day
    assert fit_transformers("llama-3.1-8b").quant == "fp32"  # CPU
    assert fit_transformers("llama-3.1-8b", gpu="4070ti").quant == "nf4"  # 16 GiB of bf16 weights do not fit 12
    assert fit_transformers("phi-3-mini-4k", gpu="4070ti").quant == "bf16"  # 3.8B: 7.6 GiB of weights
    assert fit_transformers("llama-3.1-8b", "fp16").quant == "fp16"


def test_layers_given_keep_the_longest_context_that_fits_them(smollm2_path: Path) -> None:
    # with --gpu-layers set the context still comes from the planner: the longest that fits (it fell to the shortest)
    free = fit_llamacpp(smollm2_path, gpu="4070ti")
    for layers in (0, 10):
        fitted = fit_llamacpp(smollm2_path, gpu_layers=layers, gpu="4070ti")
        assert fitted.ctx == free.ctx and fitted.gpu_layers == layers

"""VLM training: a trained projector's weights, gradients, states and saved inputs; the vision tower's forward."""

from __future__ import annotations

from dataclasses import replace

import pytest

from onecard.core.errors import ConfigError
from onecard.fit import catalog, llm_train
from onecard.fit.catalog import VisionTower
from onecard.fit.estimate import GIB
from onecard.fit.job import FitJob

LLAVA = catalog.find("llava-1.5-7b")
PROJ = 20_979_712  # LLaVA-1.5 mlp2x_gelu: 1024 -> 4096 -> 4096 with biases


def _parts(**knobs: object) -> dict[str, float]:
    assert LLAVA is not None
    job = FitJob(model="llava-1.5-7b", job="train", method="lora", seq=1024, **knobs)  # type: ignore[arg-type]
    return llm_train.estimate(LLAVA, job, None).parts


def test_trained_projector_counts_its_copy_states_and_saved_inputs() -> None:
    # LoRA under PEFT (fp32 adapters, fp32 AdamW), batch 1: the projector's modules_to_save copy in fp32 (4 B), two
    # fp32 AdamW moments (8 B); until backward its linears keep their 16-bit inputs for 576 image tokens (1024 ViT
    # features + 4096 GELU input + 4096 GELU output, 2 B each) and autocast's 16-bit copy of its weights (2 B)
    base, trained = _parts(), _parts(train_projector=True)
    assert (trained["adapters"] - base["adapters"]) * GIB == pytest.approx(4 * PROJ)
    assert (trained["optimizer"] - base["optimizer"]) * GIB == pytest.approx(8 * PROJ)
    assert (trained["activations"] - base["activations"]) * GIB == pytest.approx(576 * 2 * (1024 + 2 * 4096)
                                                                               + 2 * PROJ)
    # with its fp32 gradients (the next test) 16 B a parameter: 0.31 GiB for LLaVA-1.5


def _tiny(vision_hidden: int, image_tokens: int) -> catalog.LlmArch:
    # a 2-layer LLM (hidden 64, vocabulary 100) behind a LLaVA-style tower and two-layer projector
    assert LLAVA is not None
    proj = vision_hidden * 64 + 64 + 64 * 64 + 64
    return replace(LLAVA, n_layers=2, hidden=64, intermediate=128, n_heads=4, n_kv_heads=2, head_dim=16, vocab=100,
                   vision=VisionTower("test", 1_000_000, proj, vision_hidden, image_tokens))


def test_trained_projector_gradients_are_in_the_optimizer_step() -> None:
    # SGD (no states), LoRA r=1 on q and v: the optimizer step holds every adapter's fp32 gradient and the projector's
    # (512 x 64 + 64 + 64 x 64 + 64 = 36,992 parameters, 4 B each)
    arch = _tiny(512, 4)
    job = FitJob(model="x", job="train", method="lora", quant="bf16", seq=1, optimizer="sgd", lora_rank=1,
                 lora_targets="qv", train_projector=True)
    adapters = llm_train.trainable_params(arch, job)
    assert adapters == 2 * (64 + 64 + 64 + 32) and llm_train.projector_params(arch, job) == 36_992
    est = llm_train.estimate(arch, job, None)
    assert "peak during the optimizer step" in est.assumptions
    assert est.parts["gradients"] * GIB == pytest.approx(4 * (adapters + 36_992))
    assert any("projector trained in full (0.0M" in a for a in est.assumptions)


def test_train_projector_needs_a_vision_model() -> None:
    arch = catalog.find("llama-3.1-8b")
    assert arch is not None
    with pytest.raises(ConfigError, match="no vision tower"):
        llm_train.estimate(arch, FitJob(model="llama-3.1-8b", job="train", train_projector=True), None)


def test_vision_tower_forward_is_a_phase_of_training() -> None:
    # a wide ViT (hidden 1024, 16 image tokens) before the tiny LLM: the frozen tower's forward, 6 x 2 B x 1024 per
    # token over 16 patches + CLS, is the step's peak at sequence 1
    job = FitJob(model="x", job="train", method="lora", quant="bf16", seq=1, lora_rank=1, lora_targets="qv")
    est = llm_train.estimate(_tiny(1024, 16), job, None)
    assert "peak during the vision forward" in est.assumptions
    assert est.parts["activations"] * GIB == pytest.approx(17 * 2 * 6 * 1024)

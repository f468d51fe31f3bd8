"""Plan: "auto" knobs from fit for a named card, plain defaults without one, and the OOM ladder on this machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from onecard.core.errors import ConfigError
from onecard.fit.job import FitJob
from onecard.tune.config import TuneConfig
from onecard.tune.plan import choose, ladder

SMOL = {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
        "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152, "max_position_embeddings": 8192,
        "tie_word_embeddings": True, "torch_dtype": "bfloat16"}


@pytest.fixture
def smol(tmp_path: Path) -> str:
    import json

    (tmp_path / "config.json").write_text(json.dumps(SMOL))  # SmolLM2-135M's shape: fit sizes it from config.json
    return str(tmp_path)


def test_without_a_card_the_auto_knobs_take_plain_defaults(smol: str) -> None:
    settings, job = choose(TuneConfig(model=smol, data="x", batch_size=16), smol, longest_row=300,
                           max_positions=8192, four_bit=False, on_gpu=False)
    assert settings.source.startswith("defaults: no GPU")
    assert (settings.method, settings.micro_batch_size, settings.grad_accum, settings.gradient_checkpointing) == (
        "lora", 8, 2, False)
    assert settings.max_seq_length == 320 and job.seq == 320  # the longest row, rounded up to 64
    assert settings.optimizer == "adamw_torch_fused"


def test_a_named_card_is_planned_by_fit_and_fixed_knobs_are_kept(smol: str) -> None:
    settings, job = choose(TuneConfig(model=smol, data="x", gpu="4070ti", batch_size=16, max_seq_length=1024),
                           smol, longest_row=5000, max_positions=8192, four_bit=False, on_gpu=False)
    assert settings.source.startswith("fit: fastest plan that fits") and "4070" in (settings.card or "")
    assert settings.predicted_gib is not None and settings.predicted_gib <= settings.budget_gib
    assert settings.max_seq_length == 1024 and settings.method == "lora"  # fixed by the user / by this machine
    assert settings.micro_batch_size * settings.grad_accum == 16  # the effective batch is kept
    fixed, _ = choose(TuneConfig(model=smol, data="x", gpu="4070ti", micro_batch_size=2,
                                 gradient_checkpointing=True), smol, 300, 8192, False, False)
    assert (fixed.micro_batch_size, fixed.grad_accum, fixed.gradient_checkpointing) == (2, 8, True)


@pytest.mark.usefixtures("point_estimate")  # which micro-batch fits is the bound's; this is about the stack
def test_tune_plans_with_the_stack_it_runs(smol: str) -> None:
    """fit's `onecard` stack: TRL's fused LM head (no full fp32 logits) and the config's lora_dropout; the settings
    (the run record's "plan") carry the fit job and its predicted peaks, to set beside the measured ones."""
    from onecard.fit.plan import plan

    settings, job = choose(TuneConfig(model=smol, data="x", gpu="4070ti", batch_size=16, max_seq_length=1024,
                                      lora_dropout=0.1), smol, 300, 8192, False, False)
    assert (job.stack, job.lora_dropout) == ("onecard", 0.1)
    assert settings.fit_job is not None and FitJob(**settings.fit_job) == job
    again = plan(FitJob(**settings.fit_job)).estimate
    assert settings.predicted_gib == round(again.process_gib, 3)
    assert settings.predicted_allocated_gib == round(again.peak_allocated_gib, 3)
    assert settings.predicted_reserved_gib == round(again.peak_reserved_gib, 3)
    plain = plan(job.model_copy(update={"stack": "transformers", "lora_dropout": None})).estimate
    assert plain.parts["logits"] == pytest.approx(job.batch * job.seq * 49152 * 12 / 2**30)  # fp32 logits
    assert again.parts.get("logits", 0.0) < plain.parts["logits"] / 10 and again.process_gib < plain.process_gib
    assert any("TRL's fused LM head" in a for a in again.assumptions)
    cpu, cpu_job = choose(TuneConfig(model=smol, data="x"), smol, 300, 8192, False, False)
    assert cpu_job.stack == "onecard" and cpu.fit_job is not None and cpu.predicted_gib is None  # no card, no budget


def test_qlora_without_cuda_says_what_it_needs(smol: str) -> None:
    with pytest.raises(ConfigError, match="QLoRA needs an NVIDIA GPU with bitsandbytes"):
        choose(TuneConfig(model=smol, data="x", method="qlora"), smol, 300, 8192, four_bit=False, on_gpu=False)


def test_the_ladder_skips_the_steps_this_machine_cannot_take() -> None:
    job = FitJob(model="llama-3.1-8b", job="train", method="lora", seq=2048, batch=4, grad_accum=4, grad_ckpt=False,
                 optimizer="adamw")
    with_4bit = [reason for _, reason in ladder(job, four_bit=True)]
    without = [(j, reason) for j, reason in ladder(job, four_bit=False)]
    assert any("qlora" in r for r in with_4bit)
    assert [r for _, r in without] == ["sequence 2048 -> 1024", "sequence 1024 -> 512", "gradient checkpointing on",
                                       "batch 4 -> 2, gradient accumulation 4 -> 8",
                                       "batch 2 -> 1, gradient accumulation 8 -> 16"]
    assert all(j.method == "lora" and j.optimizer == "adamw" for j, _ in without)


def test_a_length_past_the_models_positions_is_trained_as_asked_and_said(smol: str) -> None:
    settings, _ = choose(TuneConfig(model=smol, data="x", batch_size=16, max_seq_length=8192), smol, longest_row=300,
                         max_positions=2048, four_bit=False, on_gpu=False)
    assert settings.max_seq_length == 8192 and "past the 2048 positions" in settings.source

"""The parts of `onecard asr finetune`: labels and batches, fit's plan, the ladder, checkpoints, model folders."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from onecard.asr.config import FinetuneConfig  # noqa: E402
from onecard.asr.finetune import choose, collate, latest_checkpoint, model_folder  # noqa: E402
from onecard.asr.train import _ladder  # noqa: E402
from onecard.core.errors import ModelNotFoundError  # noqa: E402


def _config(**kw: object) -> FinetuneConfig:
    return FinetuneConfig.model_validate({"model": "openai/whisper-small", "data": "x.tsv", **kw})


def test_collate_pads_labels_with_ignore_and_drops_the_start_token() -> None:
    import torch

    batch = collate(torch.zeros(2, 80, 3000), [[50257, 50362, 1, 2, 50256], [50257, 50362, 3, 50256]], 50257)
    assert batch["labels"].tolist() == [[50362, 1, 2, 50256], [50362, 3, 50256, -100]]
    assert batch["input_features"].shape == (2, 80, 3000)


def test_on_a_cpu_the_plan_is_defaults_at_the_same_effective_batch() -> None:
    plan, job = choose(_config(batch_size=16), "openai/whisper-small", on_gpu=False)
    assert (plan.micro_batch_size, plan.grad_accum, plan.gradient_checkpointing) == (8, 2, False)
    assert plan.source.startswith("defaults") and job.lora_targets == "qv"


def test_for_a_named_card_fit_plans_the_settings_and_keeps_the_effective_batch() -> None:
    plan, job = choose(_config(batch_size=16, gpu="4070ti"), "openai/whisper-small", on_gpu=False)
    assert plan.card is not None and plan.source.startswith("fit:")
    assert plan.micro_batch_size * plan.grad_accum >= 16 and plan.predicted_gib is not None
    assert plan.predicted_gib < 12  # the card's memory
    assert job.optimizer == "adamw" and job.method == "lora"


def test_the_set_knobs_are_kept() -> None:
    plan, _ = choose(_config(batch_size=16, micro_batch_size=2, gradient_checkpointing=True, gpu="4070ti"),
                     "openai/whisper-small", on_gpu=False)
    assert (plan.micro_batch_size, plan.grad_accum, plan.gradient_checkpointing) == (2, 8, True)


def test_the_oom_ladder_never_asks_for_bitsandbytes() -> None:
    _, job = choose(_config(batch_size=16, micro_batch_size=16, gpu="4070ti"), "openai/whisper-small", on_gpu=False)
    steps = list(_ladder(job))
    assert steps and all(j.optimizer == "adamw" and j.method == "lora" for j, _ in steps)
    assert steps[-1][0].batch == 1 and steps[-1][0].grad_accum == 16


def test_a_hub_id_not_in_the_cache_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError) as e:
        model_folder("openai/whisper-small")
    assert "huggingface-cli download openai/whisper-small" in str(e.value)


def test_a_ctranslate2_folder_is_not_taken_for_training(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="CTranslate2"):
        model_folder(str(tmp_path))


def test_a_checkpoint_cut_short_is_never_taken(tmp_path: Path) -> None:
    for name in ("step-5", "step-10", "tmp-step-15"):
        (tmp_path / name).mkdir()
    (tmp_path / "step-5" / "training_state.pt").write_bytes(b"x")
    (tmp_path / "tmp-step-15" / "training_state.pt").write_bytes(b"x")  # renamed only once whole
    assert latest_checkpoint(tmp_path) == tmp_path / "step-5"  # step-10 lacks its training state


@pytest.mark.parametrize("action", ["transcribe", "eval", "finetune"])
def test_every_asr_command_prints_its_help(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    from onecard.cli import main

    with pytest.raises(SystemExit) as done:
        main(["asr", action, "--help"])
    assert done.value.code == 0 and "--model" in capsys.readouterr().out


def test_the_fit_job_is_the_trained_models_own_dimensions(tmp_path: Path) -> None:
    """A model fit's catalog does not know (the tiny random Whisper), even in a folder named like a catalog one: the
    job is the folder, fit reads its config.json, and the predicted peak is for that model, not whisper-small."""
    import transformers

    from onecard.fit.plan import plan as fit_plan
    from onecard.fit.plan import resolve_arch
    from tests.unit.asr.conftest import build_tiny_whisper

    folder = build_tiny_whisper(tmp_path / "whisper-small")
    resolved = resolve_arch(str(folder))
    model = transformers.WhisperForConditionalGeneration.from_pretrained(folder)
    assert resolved.family == "whisper" and resolved.arch.params == sum(p.numel() for p in model.parameters())
    assert (resolved.arch.d, resolved.arch.enc_layers, resolved.arch.ffn) == (64, 2, 128)
    plan, job = choose(_config(batch_size=16), str(folder), on_gpu=False)
    assert job.model == str(folder) and plan.fit_job is not None and plan.fit_job["model"] == str(folder)
    assert plan.predicted_gib == round(fit_plan(job).estimate.process_gib, 3)
    small, small_job = choose(_config(batch_size=16), "openai/whisper-small", on_gpu=False)
    assert small.predicted_gib is not None and plan.predicted_gib < small.predicted_gib
    planned, job = choose(_config(batch_size=16, gpu="4070ti"), str(folder), on_gpu=False)
    assert planned.source.startswith("fit:") and job.model == str(folder)
    assert planned.predicted_gib == round(fit_plan(job).estimate.process_gib, 3)

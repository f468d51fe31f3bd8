"""Answer-only labels and the vision collator on the tiny LLaVA; the plan without a card; resumable checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("PIL")

from onecard.core.checkpoints import latest_checkpoint  # noqa: E402
from onecard.vlm.config import TuneConfig  # noqa: E402
from onecard.vlm.plan import choose  # noqa: E402
from onecard.vlm.synthetic import make_image  # noqa: E402
from onecard.vlm.tiny import make_tiny_llava  # noqa: E402
from onecard.vlm.train import IGNORE_INDEX, VisionCollator, encode  # noqa: E402


@pytest.fixture(scope="module")
def processor(tmp_path_factory: pytest.TempPathFactory) -> object:
    from onecard.vlm.model import load_processor

    return load_processor(make_tiny_llava(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture
def image(tmp_path: Path) -> str:
    path = tmp_path / "a.png"
    make_image([("red", "square", "top left"), ("blue", "circle", "bottom right")]).save(path)
    return str(path)


def test_labels_cover_the_answers_only(processor: object, image: str) -> None:
    tok = processor.tokenizer  # type: ignore[attr-defined]
    turns = [{"role": "user", "content": "what colour is the square?"}, {"role": "assistant", "content": "red"},
             {"role": "user", "content": "where is the circle?"}, {"role": "assistant", "content": "bottom right"}]
    row = encode(processor, [image], turns)
    ids, labels = row["input_ids"], row["labels"]
    assert len(ids) == len(labels)
    image_id = tok.convert_tokens_to_ids("<image>")
    assert ids.count(image_id) == 16
    assert all(label == IGNORE_INDEX for i, label in zip(ids, labels, strict=True) if i == image_id)
    answered = tok.convert_ids_to_tokens([i for i, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX])
    assert answered == ["red", "bottom", "right", "</s>"]  # both answers and the end of text, nothing else


def test_collator_pads_right_and_brings_the_pixels(processor: object, image: str) -> None:
    short = encode(processor, [image], [{"role": "user", "content": "what shape is red?"},
                                        {"role": "assistant", "content": "square"}])
    long = encode(processor, [image, image], [{"role": "user", "content": "what colour is the square?"},
                                              {"role": "assistant", "content": "red"}])
    batch = VisionCollator(processor)([short, long])
    assert batch["pixel_values"].shape == (3, 3, 64, 64)  # one per image, in row order
    n = len(short["input_ids"])
    assert batch["input_ids"].shape == (2, len(long["input_ids"]))
    assert batch["attention_mask"][0, :n].all() and not batch["attention_mask"][0, n:].any()
    assert (batch["labels"][0, n:] == IGNORE_INDEX).all()


def test_cpu_plan_uses_defaults_and_counts_image_tokens(tmp_path: Path) -> None:
    config = TuneConfig(model="tiny", data="x.jsonl", batch_size=16)
    settings, job = choose(config, "unused", longest_text=30, image_tokens=16, four_bit=False, on_gpu=False)
    assert settings.source.startswith("defaults")
    assert (settings.micro_batch_size, settings.grad_accum, settings.method) == (8, 2, "lora")
    assert settings.max_seq_length == 64 + 16 and job.seq == 64


def test_gpu_plan_is_fit_train_job_for_the_vlm(tmp_path: Path) -> None:
    folder = make_tiny_llava(tmp_path / "tiny-llava")
    config = TuneConfig(model=str(folder), data="x.jsonl", gpu="4070ti")
    settings, job = choose(config, str(folder), longest_text=30, image_tokens=16, four_bit=True, on_gpu=False)
    assert settings.card is not None and "4070" in settings.card
    assert settings.predicted_gib is not None and settings.predicted_gib < settings.budget_gib  # type: ignore[operator]
    assert job.job == "train" and job.stack == "onecard" and settings.method in ("lora", "qlora")
    assert not job.train_projector


def test_training_the_projector_is_planned_with_its_gradients_and_states() -> None:
    # LLaVA-1.5-7B's projector: ~21M parameters, ~0.3 GiB more with its fp32 copy, gradients and AdamW states
    fixed = dict(model="llava-1.5-7b", data="x.jsonl", gpu="4070ti", micro_batch_size=1, batch_size=1,
                 gradient_checkpointing=True, optimizer="paged_adamw_8bit", method="qlora", max_seq_length=1024)
    plain, plain_job = choose(TuneConfig(**fixed), "llava-1.5-7b", longest_text=400, image_tokens=576, four_bit=True,
                              on_gpu=False)
    both, job = choose(TuneConfig(**fixed, train_projector=True), "llava-1.5-7b", longest_text=400, image_tokens=576,
                       four_bit=True, on_gpu=False)
    assert job.train_projector and not plain_job.train_projector
    assert 0.1 < both.predicted_allocated_gib - plain.predicted_allocated_gib < 0.6  # type: ignore[operator]


def test_latest_checkpoint_skips_one_cut_short(tmp_path: Path) -> None:
    for step, files in ((2, ("trainer_state.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt")),
                        (4, ("trainer_state.json",))):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        for name in files:
            (folder / name).write_text("{}")
    assert latest_checkpoint(tmp_path)[0] == tmp_path / "checkpoint-2"
    assert latest_checkpoint(tmp_path / "none")[0] is None

"""Checkpoints: a save cut short leaves no `checkpoint-N`; resume takes the newest complete one, or refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from onecard.core.checkpoints import AtomicSFTTrainer, latest_checkpoint, missing  # noqa: E402
from onecard.core.errors import OnecardError  # noqa: E402
from onecard.core.records import start_run  # noqa: E402
from onecard.tune import run  # noqa: E402
from onecard.tune.config import TuneConfig  # noqa: E402

COMPLETE = ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth")


def _checkpoint(folder: Path, step: int, files: tuple[str, ...] = COMPLETE, state: str | None = None,
                prefix: str = "") -> Path:
    path = folder / f"{prefix}checkpoint-{step}"
    path.mkdir(parents=True)
    for name in files:
        (path / name).write_bytes(b"x")
    if state is None and files == COMPLETE:
        state = json.dumps({"global_step": step, "log_history": [{"step": 1, "loss": 3.0}]})
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    return path


def test_the_newest_complete_checkpoint_is_taken_and_the_ones_cut_short_are_named(tmp_path: Path) -> None:
    good = _checkpoint(tmp_path, 4)
    _checkpoint(tmp_path, 10)  # complete, but a temporary name: a save that was never renamed
    (tmp_path / "checkpoint-10").rename(tmp_path / "tmp-checkpoint-10")
    _checkpoint(tmp_path, 8, files=())  # the empty folder of the issue: killed as the save began
    _checkpoint(tmp_path, 6, files=("adapter_model.safetensors",), state='{"global_step": 6, "log_hi')  # cut in
    found, skipped = latest_checkpoint(tmp_path)
    assert found == good
    assert skipped == [
        {"checkpoint": "checkpoint-8",
         "missing": "trainer_state.json, the weights (adapter_model.safetensors), optimizer.pt, scheduler.pt"},
        {"checkpoint": "checkpoint-6", "missing": "optimizer.pt, scheduler.pt, a whole trainer_state.json"},
    ]
    assert latest_checkpoint(tmp_path / "none-yet") == (None, [])


def test_a_deepspeed_checkpoint_keeps_its_weights_and_optimizer_in_global_step(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path, 3, files=("latest",), state="{}")
    (path / "global_step3").mkdir()
    assert missing(path) == []


def test_resuming_a_run_with_no_complete_checkpoint_refuses_and_says_how_to_start_over(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    config = TuneConfig(model="tiny", data="pairs.jsonl", max_steps=4)
    with start_run("tune", config, runs_root=runs, report_to=()) as previous:
        _checkpoint(previous.dir / "checkpoints", 4, files=("adapter_model.safetensors",))  # no trainer state
        _checkpoint(previous.dir / "checkpoints", 6, prefix="tmp-")
    with pytest.raises(OnecardError, match=f"nothing to resume: run {previous.id} has no complete checkpoint "
                                           r"\(checkpoint-4 lacks trainer_state.json, optimizer.pt") as e:
        run.train(config, str(runs), (), resume=previous.id)
    assert e.value.fix and "without --resume" in e.value.fix and "--model tiny --data pairs.jsonl" in e.value.fix
    assert len(list(runs.glob("*/run.json"))) == 1  # refused before a run was recorded

    for path in (previous.dir / "checkpoints").iterdir():  # an empty checkpoints folder: the same, said so
        path.rename(tmp_path / path.name)
    with pytest.raises(OnecardError, match="no complete checkpoint \\(no checkpoint-N folder\\)"):
        run.train(config, str(runs), (), resume=previous.id)


@pytest.fixture
def pairs(shared_data: Path, tmp_path: Path) -> Path:
    lines = (shared_data / "instruct" / "dolly_hhrlhf_train_small.jsonl").read_text().splitlines()[:16]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_save_cut_short_leaves_no_checkpoint_and_the_run_resumes_from_the_one_before(
        pairs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    config = TuneConfig(model="tiny", data=str(pairs), max_steps=4, batch_size=4, max_seq_length=256,
                        logging_steps=1, save_steps=2)
    save = AtomicSFTTrainer._save_optimizer_and_scheduler

    def killed_at_step_4(self: Any, output_dir: str) -> None:  # the weights are written, the optimizer is not
        if self.state.global_step == 4:
            raise KeyboardInterrupt  # as a kill -9 would: nothing after this point runs
        save(self, output_dir)

    monkeypatch.setattr(AtomicSFTTrainer, "_save_optimizer_and_scheduler", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        run.train(config, str(runs), ())
    first = next(runs.glob("*/run.json")).parent
    folder = first / "checkpoints"
    assert sorted(p.name for p in folder.glob("*checkpoint-*")) == ["checkpoint-2", "tmp-checkpoint-4"]
    assert (folder / "tmp-checkpoint-4" / "checkpoint-4" / "adapter_model.safetensors").is_file()
    assert latest_checkpoint(folder) == (folder / "checkpoint-2", [])

    monkeypatch.setattr(AtomicSFTTrainer, "_save_optimizer_and_scheduler", save)
    resumed = run.train(config.model_copy(update={"max_steps": 6}), str(runs), (), resume=first.name)
    assert resumed.record["resumed_from"] == {"run": first.name, "checkpoint": "checkpoint-2", "skipped": []}
    assert resumed.record["metrics"]["steps"] == 6
    saved = sorted(p.name for p in (resumed.dir / "checkpoints").iterdir() if "checkpoint" in p.name)
    assert saved == ["checkpoint-4", "checkpoint-6"]  # whole, renamed; the trainer's limit of two kept



def test_an_out_of_memory_error_during_a_save_retries_from_the_checkpoint_before_and_clears_the_cut_save(
        pairs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save = AtomicSFTTrainer._save_optimizer_and_scheduler
    tries: list[int] = []

    def out_of_memory_at_step_4_once(self: Any, output_dir: str) -> None:
        if self.state.global_step == 4 and not tries:
            tries.append(4)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        save(self, output_dir)

    monkeypatch.setattr(AtomicSFTTrainer, "_save_optimizer_and_scheduler", out_of_memory_at_step_4_once)
    config = TuneConfig(model="tiny", data=str(pairs), max_steps=6, batch_size=4, max_seq_length=256,
                        logging_steps=1, save_steps=2)
    trained = run.train(config, str(tmp_path / "runs"), ())
    folder = trained.dir / "checkpoints"
    assert tries == [4] and trained.record["oom_steps"][0]["resume_from"] == str(folder / "checkpoint-2")
    assert trained.record["metrics"]["steps"] == 6
    # the next try saved into the same folder: the save cut short (tmp-checkpoint-4) is gone, the new one whole
    assert sorted(p.name for p in folder.glob("*checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]

"""The run sequence `tune train` and `vlm tune` share (core.peft_run) and its trainer plumbing (core.trainer)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel

from onecard.core.checkpoints import CHECKPOINT_PREFIX, latest_checkpoint
from onecard.core.errors import OnecardError
from onecard.core.peft_run import length_stats, ran_fields, resume_point, train_dev_examples
from onecard.core.records import start_run

COMPLETE = ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt")


def _checkpoint(folder: Path, step: int, files: tuple[str, ...] = COMPLETE, state: bool = True) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name in files:
        (path / name).write_bytes(b"x")
    if state:
        (path / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": 1, "loss": 3.0}]}))
    return path


class Split(BaseModel):
    data: str = "rows.jsonl"
    dev_data: str | None = None
    dedupe: bool = True
    dev_fraction: float = 0.25
    seed: int = 0
    model: str = "tiny"


def _rows(path: str | Path) -> list[tuple[str, int]]:
    """Rows of a fake data module: (file name, line); line 3 repeats line 1."""
    return [(Path(path).name, line) for line in (1, 2, 3, 4, 5)]


def _dedupe(rows: list[tuple[str, int]]) -> tuple[list[tuple[str, int]], list[tuple[int, int]]]:
    return [r for r in rows if r[1] != 3], [(3, 1)]


def _split(rows: list[tuple[str, int]], fraction: float, seed: int) -> tuple[list[tuple[str, int]], ...]:
    n_dev = round(len(rows) * fraction)
    return rows[n_dev:], rows[:n_dev]


def test_train_dev_rows_drop_duplicates_split_or_take_the_dev_file_and_a_resumed_run_keeps_its_split() -> None:
    fns: dict[str, Any] = {"load": _rows, "dedupe": _dedupe, "split": _split}
    train, dev, dropped = train_dev_examples(Split(), None, **fns)
    assert (train, dev, dropped) == ([("rows.jsonl", 2), ("rows.jsonl", 4), ("rows.jsonl", 5)],
                                     [("rows.jsonl", 1)], [(3, 1)])
    train, dev, dropped = train_dev_examples(Split(dedupe=False, dev_data="dev.jsonl"), None, **fns)
    assert len(train) == 5 and dev[0][0] == "dev.jsonl" and dropped == []
    train, dev, dropped = train_dev_examples(Split(), {"dir": "/runs/a"}, **fns)
    assert train[0][0] == "train.jsonl" and dev[0][0] == "dev.jsonl" and len(train) == 5 and dropped == []


def test_length_stats_keys_and_the_p95_rule() -> None:
    stats = length_stats(list(range(100, 0, -1)), max_length=90)
    assert stats == {"rows": 100, "min": 1, "mean": 50.5, "median": 51, "p95": 96, "max": 100, "total": 5050,
                     "over_max": 10, "max_length": 90}
    assert length_stats([16, 16, 16]) == {"rows": 3, "min": 16, "mean": 16.0, "median": 16, "p95": 16, "max": 16,
                                          "total": 48}
    assert length_stats([]) == {}


def test_the_checkpoint_finder_takes_the_newest_complete_one_and_names_the_newer_ones_skipped(tmp_path: Path) -> None:
    good = _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 4, files=())  # killed as its save began
    (_checkpoint(tmp_path, 6)).rename(tmp_path / "tmp-checkpoint-6")  # staged, never renamed: not a checkpoint
    assert latest_checkpoint(tmp_path) == (good, [
        {"checkpoint": "checkpoint-4",
         "missing": "the weights (adapter_model.safetensors), optimizer.pt, scheduler.pt"}])
    assert latest_checkpoint(tmp_path / "none") == (None, [])


def test_the_checkpoint_prefix_is_the_one_transformers_writes() -> None:
    trainer_utils = pytest.importorskip("transformers.trainer_utils")
    assert trainer_utils.PREFIX_CHECKPOINT_DIR == CHECKPOINT_PREFIX


def test_resume_point_refuses_a_run_with_no_complete_checkpoint_and_says_how_to_start_over(tmp_path: Path) -> None:
    previous = {"id": "r1", "dir": str(tmp_path), "config": {"model": "tiny", "data": "pairs.jsonl"}}
    _checkpoint(tmp_path / "checkpoints", 3, files=("adapter_model.safetensors",), state=False)
    with pytest.raises(OnecardError, match=r"run r1 has no complete checkpoint \(checkpoint-3 lacks trainer_state"
                                           r".json, optimizer.pt, scheduler.pt\)") as e:
        resume_point(previous, "onecard vlm tune")
    assert e.value.fix == ("start over without --resume, e.g. `onecard vlm tune --model tiny --data pairs.jsonl` "
                           "with the run's other flags")
    good = _checkpoint(tmp_path / "checkpoints", 2)
    assert resume_point(previous, "onecard vlm tune") == (
        good, [{"checkpoint": "checkpoint-3", "missing": "trainer_state.json, optimizer.pt, scheduler.pt"}])


@dataclass
class Rung:
    optimizer: str
    micro_batch_size: int = 4

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _trainer(step: int, eval_loss: float | None = None) -> Any:
    return SimpleNamespace(state=SimpleNamespace(global_step=step),
                           evaluate=lambda: {"eval_loss": eval_loss} if eval_loss is not None else {})


def test_a_step_down_continues_from_the_latest_checkpoint_unless_the_optimizer_changes(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from onecard.core.peft_run import Tries

    with start_run("tune", Split(), runs_root=tmp_path, report_to=()) as run:
        tries = Tries(run, Rung("adamw_torch"), None, command="onecard tune train", plot_title="t", loss_label="l")
        tries.step_down("micro-batch 2", Rung("adamw_torch", 2))  # nothing saved yet: from the start again
        saved = _checkpoint(run.dir / "checkpoints", 5)
        tries.callback.step = 5
        tries.step_down("gradient checkpointing on", Rung("adamw_torch", 1))
        tries.step_down("8-bit optimizer", Rung("paged_adamw_8bit", 1))  # the saved optimizer state cannot load
        assert tries.last == (Rung("paged_adamw_8bit", 1), saved)
    steps = json.loads((run.dir / "run.json").read_text())["oom_steps"]
    assert [(s["at_step"], s["change"], s["resume_from"]) for s in steps] == [
        (0, "micro-batch 2", None), (5, "gradient checkpointing on", str(saved)),
        (5, "8-bit optimizer", str(saved))]
    assert steps[-1]["settings"] == {"optimizer": "paged_adamw_8bit", "micro_batch_size": 1}


def test_the_end_of_a_run_reports_its_losses_or_on_ctrl_c_plots_the_curve_and_says_how_to_continue(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("matplotlib")
    from onecard.core.peft_run import Tries

    checkpoint = _checkpoint(tmp_path / "before", 1)  # a resumed run: its curve goes on from the checkpoint's
    with start_run("vlm", Split(), runs_root=tmp_path / "runs", report_to=()) as run:
        tries = Tries(run, Rung("adamw_torch"), checkpoint, command="onecard vlm tune", plot_title="t",
                      loss_label="l")
        tries.history["train"].append([4, 2.0])
        assert tries.evaluate(_trainer(4, eval_loss=2.5), dev_rows=3) == {"first_loss": 3.0, "final_loss": 2.0,
                                                                           "dev_loss": 2.5}
        assert tries.history["dev"] == [[4, 2.5]]
        assert tries.evaluate(_trainer(4), dev_rows=0)["dev_loss"] is None
        tries.stop.requested = True
        with pytest.raises(KeyboardInterrupt):
            tries.evaluate(_trainer(4, eval_loss=2.5), dev_rows=3)
    assert (run.dir / "loss.png").is_file()
    err = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert f"interrupted at step 4: checkpoint saved; continue with `onecard vlm tune --resume {run.id}`" in err


def test_sft_args_take_the_try_s_settings_the_user_s_schedule_and_the_capability_s_row_options(
        tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("trl")
    from onecard.core.trainer import sft_args

    schedule = SimpleNamespace(learning_rate=1e-3, lr_scheduler="cosine", warmup_ratio=0.1, weight_decay=0.0,
                               epochs=2.0, max_steps=None, logging_steps=5, save_steps=50, eval_steps=None, seed=7)
    settings = SimpleNamespace(micro_batch_size=2, grad_accum=8, gradient_checkpointing=True, optimizer="adamw_torch")
    args = sft_args(tmp_path, settings, schedule, dtype=torch.float32, device="cpu", max_length=None,
                    remove_unused_columns=False)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.optim) == (2, 8, "adamw_torch")
    assert args.gradient_checkpointing_kwargs == {"use_reentrant": False}
    assert (args.max_steps, args.seed, args.data_seed, args.eval_strategy) == (-1, 7, 7, "no")
    assert not args.bf16 and not args.fp16 and args.use_cpu and args.prediction_loss_only
    assert args.max_length is None and args.remove_unused_columns is False and args.report_to == []


def test_a_run_is_observed_as_the_job_it_trained() -> None:
    """Batches are padded to their longest row: rows of at most 600 tokens under a 2048 max_seq_length peak as a
    600-token job, which is what `onecard fit calibrate` must compare the peak with; packed rows fill max_seq_length."""
    assert ran_fields(2048, 600, packing=False) == {"seq": 600}
    assert ran_fields(2048, 2048, packing=False) is None and ran_fields(2048, 600, packing=True) is None

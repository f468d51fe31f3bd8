"""`onecard vlm` as a user runs it on the tiny LLaVA and the synthetic shapes set: data synth and check, a tune that
teaches the model to read the images (answer accuracy from chance to well above it), Ctrl-C and --resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("PIL")

from onecard.vlm.evaluate import accuracy_by_kind  # noqa: E402
from tests.integration.in_process import cli, cli_json  # noqa: E402

pytestmark = pytest.mark.integration

# settings of the learning test, chosen on the synthetic set's seed-0 train split (dev: seed 10000, never tuned on)
TUNE = ("--model", "tiny", "--batch-size", "16", "--learning-rate", "3e-3", "--lr-scheduler", "constant",
        "--warmup-ratio", "0", "--lora-dropout", "0", "--train-projector", "--precision", "fp32", "--logging-steps",
        "10", "--report-to", "none")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vlm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ONECARD_HOME", str(root / "home"))
        written = cli_json("vlm", "data", "synth", str(root / "shapes"), "--train-images", "100", "--dev-images", "20",
                           "--shapes", "1")
    return {"train": Path(written["train"]), "dev": Path(written["dev"]), "root": root}


def test_data_check_counts_image_tokens(shapes: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONECARD_HOME", str(shapes["root"] / "home"))
    report = cli_json("vlm", "data", "check", str(shapes["dev"]), "--model", "tiny")
    assert report["valid"] == report["rows"] == 60 and report["bad"] == []
    assert report["image_tokens"]["min"] == report["image_tokens"]["max"] == 16


@pytest.mark.slow
def test_tune_teaches_the_tiny_model_to_read_the_images(shapes: dict[str, Path],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from onecard.vlm.synthetic import CHANCE

    monkeypatch.setenv("ONECARD_HOME", str(shapes["root"] / "home"))
    runs = shapes["root"] / "runs"
    trained = cli_json("vlm", "tune", *TUNE, "--data", str(shapes["train"]), "--dev-data", str(shapes["dev"]),
                       "--max-steps", "150", "--save-steps", "1000", "--runs-dir", str(runs))
    assert trained["final_loss"] < trained["first_loss"] / 3
    adapter = Path(trained["dir"]) / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    base, tuned = accuracy_by_kind(shapes["dev"]), accuracy_by_kind(shapes["dev"], adapter)
    chance = sum(CHANCE.values()) / len(CHANCE)  # a uniform guess of the right kind of answer: 0.28
    assert base["all"] <= chance
    assert tuned["all"] >= 2 * chance, (base, tuned)
    assert all(tuned[kind] > CHANCE[kind] for kind in CHANCE), tuned


def test_interrupted_tune_resumes_from_its_checkpoint(shapes: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from onecard.vlm import train

    monkeypatch.setenv("ONECARD_HOME", str(shapes["root"] / "home"))
    runs = shapes["root"] / "resume-runs"
    original = train.RecordCallback.on_step_end

    def ctrl_c_at_step_3(self: Any, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 3:
            self.stop.requested = True  # what the Ctrl-C handler sets while a step runs
        original(self, args, state, control, **kwargs)

    monkeypatch.setattr(train.RecordCallback, "on_step_end", ctrl_c_at_step_3)
    code, _, err = cli("vlm", "tune", *TUNE, "--data", str(shapes["dev"]), "--max-steps", "6", "--runs-dir", str(runs))
    assert code == 130, err
    (record_file,) = runs.glob("*/run.json")
    first = json.loads(record_file.read_text())
    assert first["status"] == "interrupted"
    checkpoint = record_file.parent / "checkpoints" / "checkpoint-3"
    assert (checkpoint / "adapter_model.safetensors").is_file()
    monkeypatch.setattr(train.RecordCallback, "on_step_end", original)
    resumed = cli_json("vlm", "tune", "--resume", first["id"], "--runs-dir", str(runs), "--report-to", "none")
    record = json.loads((Path(resumed["dir"]) / "run.json").read_text())
    assert record["resumed_from"] == {"run": first["id"], "checkpoint": "checkpoint-3"}
    logged = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    assert resumed["steps"] == 6 and resumed["first_loss"] == logged[0]["loss"]  # the curve goes on from step 1


def test_a_save_cut_short_leaves_the_checkpoint_before_it(shapes: dict[str, Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill while step 4's checkpoint is written: no checkpoint-4 appears, checkpoint-2 stays whole and resumes."""
    from onecard.core.checkpoints import AtomicSFTTrainer

    monkeypatch.setenv("ONECARD_HOME", str(shapes["root"] / "home"))
    runs = shapes["root"] / "cut-runs"
    save = AtomicSFTTrainer._save_optimizer_and_scheduler

    def killed_at_step_4(self: Any, output_dir: str) -> None:  # the adapter is written, the optimizer is not
        if self.state.global_step == 4:
            raise KeyboardInterrupt  # as a kill would: nothing after this point runs
        save(self, output_dir)

    monkeypatch.setattr(AtomicSFTTrainer, "_save_optimizer_and_scheduler", killed_at_step_4)
    code, _, err = cli("vlm", "tune", *TUNE, "--data", str(shapes["dev"]), "--max-steps", "4", "--save-steps", "2",
                       "--runs-dir", str(runs))
    assert code == 130, err
    (record_file,) = runs.glob("*/run.json")
    folder = record_file.parent / "checkpoints"
    assert sorted(p.name for p in folder.glob("*checkpoint-*")) == ["checkpoint-2", "tmp-checkpoint-4"]
    monkeypatch.setattr(AtomicSFTTrainer, "_save_optimizer_and_scheduler", save)
    first = json.loads(record_file.read_text())
    resumed = cli_json("vlm", "tune", "--resume", first["id"], "--runs-dir", str(runs), "--report-to", "none")
    record = json.loads((Path(resumed["dir"]) / "run.json").read_text())
    assert record["resumed_from"] == {"run": first["id"], "checkpoint": "checkpoint-2"}
    assert resumed["steps"] == 4

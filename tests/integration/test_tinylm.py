"""`onecard tinylm` as a user runs it: train the tiny preset, sample, eval, bench, resume, and Ctrl-C mid-training."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from onecard.tinylm.train import load_checkpoint  # noqa: E402
from tests.integration.interrupt import IGNORING_SIGINT, interrupt_when_ready

pytestmark = pytest.mark.integration

ONECARD = [sys.executable, "-m", "onecard.cli"]
SHAKESPEARE = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare" / "input.txt"


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*ONECARD, *args], capture_output=True, text=True, timeout=300, env=os.environ.copy())
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _record(runs: Path, run_id: str) -> dict[str, Any]:
    return dict(json.loads((runs / run_id / "run.json").read_text()))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """200 kB of TinyShakespeare to train on, and 20 kB of the text after it (in the same characters) to evaluate."""
    if not SHAKESPEARE.is_file():
        pytest.skip(f"{SHAKESPEARE} is absent")
    text = SHAKESPEARE.read_text()
    root = tmp_path_factory.mktemp("tinylm")
    train, other = root / "train.txt", root / "other.txt"
    train.write_text(text[:200_000])
    seen = set(text[:200_000])
    other.write_text("".join(c for c in text[200_000:220_000] if c in seen))
    return {"train": train, "other": other, "runs": root / "runs"}


@pytest.fixture(scope="module")
def trained(corpus: dict[str, Path]) -> dict[str, Any]:
    out = _run("tinylm", "train", "--data", str(corpus["train"]), "--preset", "tiny", "--runs-dir",
               str(corpus["runs"]), "--report-to", "none", "--json")
    return dict(json.loads(out.stdout))


def test_train_lowers_the_loss_and_leaves_a_checkpoint(corpus: dict[str, Path], trained: dict[str, Any]) -> None:
    record = _record(corpus["runs"], trained["run_id"])
    assert record["status"] == "succeeded" and record["plan"]["vocab_size"] < 70
    # An untrained model predicts every character equally: ln(vocab) nats. The tiny preset must do much better.
    assert trained["val_loss"] < math.log(record["plan"]["vocab_size"]) - 1.0
    assert trained["val_perplexity"] == pytest.approx(math.exp(trained["val_loss"]))
    assert trained["val_bits_per_char"] == pytest.approx(trained["val_loss"] / math.log(2))  # one char per token
    assert trained["steps"] == 100 and trained["tokens_per_s"] > 0 and 0 < trained["mfu"] < 1
    run_dir = Path(trained["dir"])
    assert {Path(a["path"]).name for a in record["artifacts"]} == {"ckpt.safetensors", "tokenizer.json", "loss.png"}
    model, state = load_checkpoint(run_dir / "ckpt.safetensors")
    assert state["step"] == 100 and model.config.pos == "rope" and model.config.n_layer == 2
    train_losses = [loss for _, loss in state["history"]["train"]]
    assert train_losses[-1] < train_losses[0]


def test_sample_continues_the_prompt_the_same_with_or_without_the_cache(
        corpus: dict[str, Path], trained: dict[str, Any]) -> None:
    args = ("tinylm", "sample", trained["run_id"], "--prompt", "ROMEO:", "--max-new-tokens", "60",
            "--runs-dir", str(corpus["runs"]))
    streamed = _run(*args).stdout
    assert streamed.startswith("ROMEO:") and len(streamed) == len("ROMEO:") + 60 + 1  # + the final newline
    cached = json.loads(_run(*args, "--json").stdout)["samples"]
    uncached = json.loads(_run(*args, "--no-cache", "--json").stdout)["samples"]
    assert cached == uncached == [streamed[:-1]]


def test_eval_reports_perplexity_on_another_file(corpus: dict[str, Path], trained: dict[str, Any]) -> None:
    text = _run("tinylm", "eval", trained["run_id"], "--data", str(corpus["other"]), "--runs-dir",
                str(corpus["runs"])).stdout
    assert "perplexity" in text and "bits_per_char" in text
    other = json.loads(_run("tinylm", "eval", trained["run_id"], "--data", str(corpus["other"]), "--runs-dir",
                            str(corpus["runs"]), "--json").stdout)
    assert other["perplexity"] == pytest.approx(math.exp(other["loss"])) and other["chars"] == other["tokens"]
    assert abs(other["loss"] - trained["val_loss"]) < 0.5  # more of the same plays
    own = json.loads(_run("tinylm", "eval", "last", "--runs-dir", str(corpus["runs"]), "--json").stdout)
    assert own["data"] == "validation split" and own["loss"] == pytest.approx(trained["val_loss"], abs=1e-6)


def test_bench_reports_throughput_mfu_and_the_cache_speedup(corpus: dict[str, Path],
                                                          trained: dict[str, Any]) -> None:
    result = json.loads(_run("tinylm", "bench", trained["run_id"], "--train-steps", "3", "--new-tokens", "40",
                             "--runs-dir", str(corpus["runs"]), "--json").stdout)
    assert result["train_tokens_per_s"] > 0 and 0 < result["mfu"] < 1 and result["peak_tflops"] > 0
    assert result["generate_tokens_per_s"] > 0 and result["kv_cache_speedup"] > 0


def test_resume_continues_from_the_step_reached(corpus: dict[str, Path], trained: dict[str, Any]) -> None:
    out = json.loads(_run("tinylm", "train", "--resume", trained["run_id"], "--max-iters", "130", "--runs-dir",
                          str(corpus["runs"]), "--report-to", "none", "--json").stdout)
    record = _record(corpus["runs"], out["run_id"])
    assert record["resumed_from"] == {"run": trained["run_id"], "step": 100}
    assert record["config"]["max_iters"] == 130 and record["config"]["n_layer"] == 2  # the run's config, one flag
    assert out["steps"] == 130
    _, state = load_checkpoint(Path(out["dir"]) / "ckpt.safetensors")
    assert [s for s, _ in state["history"]["train"]] == list(range(10, 131, 10))  # the curve goes on
    changed = _run("tinylm", "train", "--resume", trained["run_id"], "--n-layer", "3", "--runs-dir",
                   str(corpus["runs"]), "--report-to", "none", check=False)
    assert changed.returncode == 2 and "keeps the model's shape, but n_layer changed" in changed.stderr


def test_bad_data_is_a_clear_error(tmp_path: Path) -> None:
    result = _run("tinylm", "train", "--data", str(tmp_path / "missing.txt"), "--preset", "tiny", "--runs-dir",
                  str(tmp_path / "runs"), "--report-to", "none", check=False)
    assert result.returncode == 2 and "missing.txt does not exist" in result.stderr
    assert "fix: pass a text file or a folder to --data" in result.stderr


@pytest.mark.slow
def test_ctrl_c_leaves_a_usable_checkpoint_and_an_interrupted_run(corpus: dict[str, Path], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # Ctrl-C at any step past the first checkpoint (written atomically) saves the step reached; started with SIGINT
    # ignored, as a script's background job is
    returncode, stderr, sent = interrupt_when_ready(
        [*IGNORING_SIGINT, *ONECARD, "tinylm", "train", "--data", str(corpus["train"]), "--preset", "tiny",
         "--max-iters", "100000", "--eval-interval", "20", "--eval-windows", "4", "--runs-dir", str(runs),
         "--report-to", "none"],
        lambda: list(runs.glob("*/ckpt.safetensors")), wait_s=120, env=os.environ.copy())
    assert returncode == 130, stderr
    run_dir = next(runs.glob("*/ckpt.safetensors")).parent
    record = _record(runs, run_dir.name)
    assert record["status"] == "interrupted"
    # a bound, not a benchmark: checkpoint, plot and record took 1.3 s on 2 cores at load average 8
    assert dt.datetime.fromisoformat(record["ended_at"]).timestamp() - sent < 10
    _, state = load_checkpoint(run_dir / "ckpt.safetensors")
    step = state["step"]
    assert step >= 20 and f"interrupted at step {step}: checkpoint saved" in stderr  # the step reached, not the eval's
    out = json.loads(_run("tinylm", "train", "--resume", run_dir.name, "--max-iters", str(step + 10), "--runs-dir",
                          str(runs), "--report-to", "none", "--json").stdout)
    assert out["steps"] == step + 10
    assert _record(runs, out["run_id"])["resumed_from"] == {"run": run_dir.name, "step": step}

"""LoRA training on a tiny random-weight pipeline: the loss falls, the record holds the losses, the LoRA file loads
back into the pipeline with diffusers' `load_lora_weights` and changes its output (and not at weight 0); Ctrl-C saves
after the step, and --resume continues as if the run had never stopped; bad data and a folder that is no pipeline
stop before anything loads."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

pytest.importorskip("diffusers", reason="needs diffusers (pip install 'onecard[diffuse]')")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from onecard.cli import main  # noqa: E402
from onecard.core.errors import DataError, ModelNotFoundError  # noqa: E402
from onecard.diffuse import train as components  # noqa: E402
from onecard.diffuse.config import DiffuseConfig  # noqa: E402
from onecard.diffuse.run import LORA_DIR, STATE_FILE, TRAINING_STATE, train  # noqa: E402
from onecard.diffuse.tiny import make_tiny_pipeline  # noqa: E402
from onecard.diffuse.train import LORA_FILE  # noqa: E402

SETTINGS = ["--resolution", "32", "--batch-size", "4", "--lr", "1e-2", "--dtype", "fp32", "--device", "cpu",
            "--seed", "0", "--report-to", "none"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd"), seed=0)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):  # a colour field with a noisy square: something for the LoRA to fit
        a = np.zeros((32, 32, 3), np.uint8)
        a[:, :, i % 3] = 200
        a[8:24, 8:24] = rng.integers(0, 255, (16, 16, 3))
        Image.fromarray(a).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text("a photo of a square")
    return folder


def _generate(pipe: object) -> np.ndarray:
    return pipe("sks a photo of a square", num_inference_steps=2, height=32, width=32, output_type="np",  # type: ignore[operator]
                generator=torch.Generator().manual_seed(0)).images


@pytest.mark.slow
def test_the_loss_falls_and_the_lora_loads_and_changes_the_output(base: Path, images: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import StableDiffusionPipeline

    from onecard.diffuse import training

    observed: list[dict] = []
    monkeypatch.setattr(training, "observe_run", observed.append)
    argv = ["diffuse", "train", "--base", str(base), "--data", str(images), "--token", "sks", "--rank", "8",
            "--max-steps", "8", *SETTINGS, "--runs-dir", str(tmp_path / "runs"), "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 8 and out["first_loss"] > 0 and out["final_loss"] > 0
    assert out["last_quarter_loss"] < out["first_quarter_loss"]  # means of 2 steps: one step's loss is noisy
    record = json.loads((Path(out["dir"]) / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert record["metrics"]["first_loss"] == out["first_loss"] and record["metrics"]["final_loss"] == out["final_loss"]
    lora = Path(out["dir"]) / LORA_DIR
    assert (lora / LORA_FILE).is_file() and json.loads((lora / STATE_FILE).read_text()) == {"step": 8}
    # the finished record goes to `onecard fit calibrate`'s observations (on a GPU: its training steps' peak)
    assert [(r["id"], r["status"], r["plan"]["fit_job"]["job"]) for r in observed] == [(record["id"], "succeeded",
                                                                                        "train")]

    pipe = StableDiffusionPipeline.from_pretrained(str(base))
    pipe.set_progress_bar_config(disable=True)
    before = _generate(pipe)
    pipe.load_lora_weights(str(lora), adapter_name="trained")
    after = _generate(pipe)
    pipe.set_adapters(["trained"], adapter_weights=[0.0])
    at_zero = _generate(pipe)
    assert np.abs(after - before).max() > 1e-3
    np.testing.assert_allclose(at_zero, before, atol=1e-5)


@pytest.mark.slow
def test_ctrl_c_saves_the_lora_after_the_step(base: Path, images: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = components.noise_loss

    def interrupted_at_step_3(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C during the step
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(components, "noise_loss", interrupted_at_step_3)
    from onecard.diffuse import training

    observed: list[dict] = []
    monkeypatch.setattr(training, "observe_run", observed.append)
    config = DiffuseConfig(base=str(base), data=str(images), max_steps=8, resolution=32, batch_size=4, dtype="fp32",
                           device="cpu", rank=4)
    with pytest.raises(KeyboardInterrupt):
        train(config, str(tmp_path / "runs"), report_to=())
    (run_dir,) = (tmp_path / "runs").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted" and record["metrics"]["steps"] == 3
    assert json.loads((run_dir / LORA_DIR / STATE_FILE).read_text()) == {"step": 3}
    assert (run_dir / LORA_DIR / LORA_FILE).is_file() and (run_dir / LORA_DIR / TRAINING_STATE).is_file()
    assert observed == []  # an interrupted run is no observation of the job's peak


def test_bad_images_stop_training_before_the_model_loads(images: Path, tmp_path: Path) -> None:
    (images / "0.txt").unlink()
    config = DiffuseConfig(base=str(tmp_path / "nowhere"), data=str(images), resolution=32)
    with pytest.raises(DataError, match="0.png"):
        train(config, str(tmp_path / "runs"), report_to=())
    assert not (tmp_path / "runs").exists()


def test_a_folder_that_is_no_pipeline_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="model_index.json"):
        components.load_pipeline(tmp_path, "cpu", torch.float32)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_half_precision_training_on_cuda(base: Path, images: Path, tmp_path: Path, dtype: str) -> None:
    # Frozen weights in half precision under autocast, the LoRA in fp32 (fp16: with the gradient scaler).
    if dtype == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this card has no native bf16")
    config = DiffuseConfig(base=str(base), data=str(images), max_steps=8, resolution=32, batch_size=4, lr=1e-2,
                           dtype=dtype, device="cuda", rank=4)
    run = train(config, str(tmp_path / "runs"), report_to=())
    metrics = run.record["metrics"]
    assert metrics["steps"] == 8 and all(np.isfinite([metrics["first_loss"], metrics["final_loss"]]))
    assert run.record["model"]["dtype"] == {"fp16": "float16", "bf16": "bfloat16"}[dtype]
    from safetensors.torch import load_file

    weights = load_file(str(run.dir / LORA_DIR / LORA_FILE))
    assert weights and all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in weights.values())


@pytest.mark.slow
def test_resume_continues_as_if_never_stopped(base: Path, images: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file

    runs = ["--runs-dir", str(tmp_path / "runs"), "--json"]
    common = ["diffuse", "train", "--base", str(base), "--data", str(images), "--rank", "4", *SETTINGS]

    def trained(*argv: str) -> dict:
        assert main([*argv, *runs]) == 0
        return json.loads(capsys.readouterr().out)

    straight = trained(*common, "--max-steps", "6")
    half = trained(*common, "--max-steps", "3")
    resumed = trained("diffuse", "train", "--resume", half["run_id"], "--max-steps", "6", "--report-to", "none")
    assert resumed["steps"] == 6 and resumed["run_id"] != half["run_id"]
    for key in ("first_loss", "final_loss", "last_quarter_loss"):
        assert resumed[key] == pytest.approx(straight[key], rel=1e-5)
    a, b = (load_file(str(Path(r["dir"]) / LORA_DIR / LORA_FILE)) for r in (straight, resumed))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)

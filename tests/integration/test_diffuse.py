"""`onecard diffuse` as the README walks a new user through it, on the tiny random-weight pipeline and CLIP model:
check the data (contact sheet), caption what has no caption, train a LoRA planned for a 12 GB card with a validation
grid, sample with it, evaluate it, export it for diffusers and for A1111/ComfyUI, and load both exports back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("diffusers", reason="needs diffusers (pip install 'onecard[diffuse]')")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from onecard.diffuse.tiny import make_tiny_clip, make_tiny_pipeline  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ONECARD = [sys.executable, "-m", "onecard.cli"]
CPU = ["--device", "cpu", "--dtype", "fp32"]


def _run(*args: str, code: int = 0) -> dict[str, Any]:
    result = subprocess.run([*ONECARD, *args, "--json"], capture_output=True, text=True, timeout=900,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == code, result.stderr[-3000:]
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_the_readme_flow(tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    base, model = make_tiny_pipeline(tmp_path / "sd"), make_tiny_clip(tmp_path / "clip")
    data = tmp_path / "photos"
    data.mkdir()
    for i in range(4):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(data / f"{i}.png")
        if i:
            (data / f"{i}.txt").write_text("a photo of a square")
    runs = ["--runs-dir", str(tmp_path / "runs")]

    report = _run("diffuse", "data", "check", str(data), "--resolution", "32", "--sheet", str(tmp_path / "s.png"),
                  code=1)
    assert [p["kind"] for p in report["problems"]] == ["caption"] and Path(report["sheet"]).is_file()
    assert _run("diffuse", "caption", str(data))["written"] == [str(data / "0.txt")]
    assert _run("diffuse", "data", "check", str(data), "--resolution", "32")["errors"] == 0

    trained = _run("diffuse", "train", "--base", str(base), "--data", str(data), "--resolution", "32", "--rank", "4",
                   "--max-steps", "6", "--batch-size", "2", "--lr", "1e-2", "--gpu", "4070ti", "--validate-every",
                   "6", "--validation-seeds", "2", "--report-to", "none", *CPU, *runs)
    record = json.loads((Path(trained["dir"]) / "run.json").read_text())
    assert record["plan"]["card"] and record["plan"]["predicted_gib"] > 0  # planned as SD 1.5 on a 12 GB card
    assert trained["steps"] == 6 and (Path(trained["dir"]) / "validation" / "step-000006.png").is_file()

    sampled = _run("diffuse", "sample", trained["run_id"], "--prompt", "sks a photo", "--steps", "2", "--resolution",
                   "32", "--gpu", "4070ti", "--out", str(tmp_path / "out"), *CPU, *runs)
    assert sampled["plan"]["source"].startswith("fit:") and Path(sampled["images"][0]["file"]).is_file()
    scored = _run("diffuse", "eval", trained["run_id"], "--clip", str(model), "--images", "1", "--steps", "2", *CPU,
                  *runs)
    assert {"subject_clip_score", "subject_similarity"} <= set(scored["tuned"])

    pipe = StableDiffusionPipeline.from_pretrained(str(base))
    pipe.set_progress_bar_config(disable=True)

    def draw() -> np.ndarray:
        return pipe("sks a photo", num_inference_steps=2, height=32, width=32, output_type="np",
                    generator=torch.Generator().manual_seed(0)).images

    before = draw()
    for fmt in ("kohya", "diffusers"):
        exported = Path(_run("diffuse", "export", trained["run_id"], "--format", fmt, *runs)["file"])
        pipe.load_lora_weights(str(exported.parent), weight_name=exported.name, adapter_name=fmt)
        pipe.set_adapters([fmt])
        assert np.abs(draw() - before).max() > 1e-4

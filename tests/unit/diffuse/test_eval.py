"""`onecard diffuse eval`: a trained run drawn with its LoRA and without, scored by a (tiny, random) CLIP model: the
subject prompt's CLIP score and similarity to the training images, the class prompt's and its drift; images and
eval.json in the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("diffusers", reason="needs diffusers (pip install 'onecard[diffuse]')")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from onecard.cli import main  # noqa: E402
from onecard.diffuse import evaluate as clip  # noqa: E402
from onecard.diffuse import prior  # noqa: E402
from onecard.diffuse.tiny import make_tiny_clip, make_tiny_pipeline  # noqa: E402


def test_the_measures_are_torchmetrics_and_dreambooths() -> None:
    a = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), dim=-1)
    text = torch.tensor([[1.0, 0.0]])
    assert clip.clip_score(a, text) == pytest.approx(100 * (1.0 + 0.6) / 2)
    assert clip.clip_score(-a, text) == 0  # torchmetrics clamps a negative cosine at 0
    assert clip.mean_similarity(a, a) == pytest.approx((1 + 0.6 + 0.6 + 1) / 4)
    assert clip.paired_similarity(a, a) == pytest.approx(1.0)
    assert clip.without_token("a photo of sks dog", "sks") == "a photo of dog"


@pytest.mark.slow
def test_eval_scores_the_lora_against_the_base(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prior, "CLASS_STEPS", 2)
    base = make_tiny_pipeline(tmp_path / "sd")
    model = make_tiny_clip(tmp_path / "clip")
    data = tmp_path / "img"
    data.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(data / f"{i}.png")
        (data / f"{i}.txt").write_text("a photo of a square")
    runs = ["--runs-dir", str(tmp_path / "runs"), "--json"]
    assert main(["diffuse", "train", "--base", str(base), "--data", str(data), "--resolution", "32", "--max-steps",
                 "2", "--batch-size", "2", "--lr", "1e-1", "--rank", "4", "--dtype", "fp32", "--device", "cpu",
                 "--class-prompt", "a photo of a square", "--class-images", "1", "--report-to", "none", *runs]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["diffuse", "eval", run_id, "--clip", str(model), "--images", "2", "--steps", "2", "--device", "cpu",
                 "--dtype", "fp32", *runs]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prompts"] == {"subject": "sks a photo of a square", "class": "a photo of a square"}
    for side in ("tuned", "base"):
        assert set(out[side]) == {"subject_clip_score", "subject_similarity", "class_clip_score"}
        assert 0 <= out[side]["subject_clip_score"] <= 100 and -1 <= out[side]["subject_similarity"] <= 1
    assert -1 <= out["class_drift_similarity"] <= 1
    folder = Path(out["files"]["tuned_subject"][0]).parent
    assert json.loads((folder / "eval.json").read_text()) == out
    tuned, untuned = (np.asarray(Image.open(out["files"][k][0])) for k in ("tuned_subject", "base_subject"))
    assert np.abs(tuned.astype(int) - untuned).max() > 0  # the LoRA (lr 0.1) changes what is drawn

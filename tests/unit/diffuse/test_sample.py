"""Sampling: LoRA specs parsed (PATH[:WEIGHT]); a trained run draws with its LoRA, one recorded seed per image; a
LoRA at weight 0 gives the base's images, at weight 1 other ones; two LoRAs load together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onecard.core.errors import ModelNotFoundError
from onecard.diffuse.sample import parse_lora


def test_a_lora_spec_is_a_path_and_a_weight(tmp_path: Path) -> None:
    lora = tmp_path / "style.safetensors"
    lora.write_bytes(b"")
    assert parse_lora(f"{lora}:0.5") == (lora, 0.5)
    assert parse_lora(str(lora)) == (lora, 1.0)
    with pytest.raises(ModelNotFoundError, match="missing.safetensors"):
        parse_lora(str(tmp_path / "missing.safetensors:0.8"))


@pytest.mark.slow
def test_a_run_samples_with_its_lora_and_weight_0_is_the_base(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("diffusers", reason="needs diffusers (pip install 'onecard[diffuse]')")
    import numpy as np
    from PIL import Image

    from onecard.cli import main
    from onecard.diffuse.config import DiffuseConfig
    from onecard.diffuse.run import LORA_DIR, train
    from onecard.diffuse.tiny import make_tiny_pipeline
    from onecard.diffuse.train import LORA_FILE

    base = make_tiny_pipeline(tmp_path / "base")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32), (200 * i, 40, 90)).save(images / f"{i}.png")
        (images / f"{i}.txt").write_text("a square")
    runs = tmp_path / "runs"
    trained = train(DiffuseConfig(base=str(base), data=str(images), resolution=32, max_steps=3, batch_size=2,
                                  lr=1e-2, dtype="fp32", device="cpu"), str(runs), report_to=())
    lora = trained.dir / LORA_DIR / LORA_FILE
    common = ["--steps", "2", "--resolution", "32", "--dtype", "fp32", "--device", "cpu", "--runs-dir", str(runs),
              "--json"]

    def draw(source: str, out: str, *more: str) -> tuple[dict, list[np.ndarray]]:
        assert main(["diffuse", "sample", source, "--prompt", "sks a square", "--out", str(tmp_path / out),
                     *common, *more]) == 0
        result = json.loads(capsys.readouterr().out)
        return result, [np.asarray(Image.open(i["file"]), dtype=np.int16) for i in result["images"]]

    result, with_lora = draw(trained.id, "run", "--batch", "2", "--seed", "7")
    assert [i["seed"] for i in result["images"]] == [7, 8] and result["run"] == trained.id
    assert result["loras"] == [{"path": str(lora), "weight": 1.0, "adapter": "lora0"}]
    assert json.loads((tmp_path / "run" / "samples.json").read_text()) == result
    assert with_lora[0].shape == (32, 32, 3)
    _, plain = draw(str(base), "base", "--seed", "7")
    _, at_zero = draw(str(base), "zero", "--seed", "7", "--lora", f"{lora}:0")
    assert np.array_equal(at_zero[0], plain[0])
    assert np.abs(with_lora[0] - plain[0]).max() > 0
    result, _ = draw(trained.id, "two", "--seed", "7", "--lora", f"{lora.parent}:0.5")  # a folder, a second adapter
    assert [(x["adapter"], x["weight"]) for x in result["loras"]] == [("lora0", 1.0), ("lora1", 0.5)]


@pytest.mark.slow
def test_an_out_of_memory_error_steps_down_fits_sampling_ladder(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("diffusers", reason="needs diffusers (pip install 'onecard[diffuse]')")
    import torch

    from onecard.diffuse import sample as sampling
    from onecard.diffuse.config import SampleConfig
    from onecard.diffuse.run import sample
    from onecard.diffuse.tiny import make_tiny_pipeline

    real, calls = sampling.generate, []

    def out_of_memory_once(pipe: object, *args: object, **kwargs: object) -> list:
        calls.append(len(kwargs["seeds"]))  # type: ignore[arg-type]
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real(pipe, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sampling, "generate", out_of_memory_once)
    base = make_tiny_pipeline(tmp_path / "base")
    result = sample(SampleConfig(source=str(base), prompt="a square", steps=2, resolution=32, batch=2, gpu="4070ti",
                                 dtype="fp32", device="cpu", out=str(tmp_path / "out")))
    assert result["plan"]["source"].startswith("fit: fastest plan that fits") and result["plan"]["predicted_gib"]
    # fit's plan already slices the VAE; with no GPU to offload to, the next step is half the batch per call
    assert result["plan"]["fit_job"]["vae_slicing"] and result["plan"]["fit_job"]["offload"] == "none"
    assert [s["change"] for s in result["oom_steps"]] == ["batch 2 -> 1"] and calls == [2, 1, 1]
    assert [i["seed"] for i in result["images"]] == [0, 1]

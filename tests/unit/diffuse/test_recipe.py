"""The training recipe's options on the tiny pipelines: SDXL (two text encoders, size ids), prior preservation with
cached class images, aspect-ratio buckets, validation grids, Min-SNR and noise offset, and a CUDA out-of-memory
error stepping down fit's ladder (raised on purpose on the CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("diffusers", reason="needs diffusers (pip install 'onecard[diffuse]')")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from onecard.diffuse import prior, validate  # noqa: E402
from onecard.diffuse import train as components  # noqa: E402
from onecard.diffuse.config import DiffuseConfig  # noqa: E402
from onecard.diffuse.run import LORA_DIR, train  # noqa: E402
from onecard.diffuse.tiny import make_tiny_pipeline  # noqa: E402
from onecard.diffuse.train import LORA_FILE  # noqa: E402


@pytest.fixture(autouse=True)
def few_denoising_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prior, "CLASS_STEPS", 2)  # the images' content does not matter here, only that they are drawn
    monkeypatch.setattr(validate, "VALIDATION_STEPS", 2)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd"), seed=0)


@pytest.fixture(scope="module")
def base_xl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_pipeline(tmp_path_factory.mktemp("tiny-sdxl"), seed=0, sdxl=True)


def _images(folder: Path, sizes: list[tuple[int, int]]) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text("a photo of a square")
    return folder


def _config(base: Path, data: Path, **kw: object) -> DiffuseConfig:
    return DiffuseConfig.model_validate({"base": str(base), "data": str(data), "resolution": 32, "batch_size": 2,
                                         "lr": 1e-2, "dtype": "fp32", "device": "cpu", "rank": 4, "max_steps": 4,
                                         **kw})


@pytest.mark.slow
def test_sdxl_trains_and_its_lora_changes_the_sdxl_pipeline(base_xl: Path, tmp_path: Path) -> None:
    from diffusers import StableDiffusionXLPipeline

    run = train(_config(base_xl, _images(tmp_path / "img", [(32, 32)] * 2)), str(tmp_path / "runs"), report_to=())
    assert run.record["model"]["family"] == "sdxl" and run.record["metrics"]["steps"] == 4
    assert np.isfinite(run.record["metrics"]["final_loss"])
    pipe = StableDiffusionXLPipeline.from_pretrained(str(base_xl))
    pipe.set_progress_bar_config(disable=True)

    def draw() -> np.ndarray:
        return pipe("sks a photo", num_inference_steps=2, height=32, width=32, output_type="np",
                    generator=torch.Generator().manual_seed(0)).images

    before = draw()
    pipe.load_lora_weights(str(run.dir / LORA_DIR), weight_name=LORA_FILE)
    assert np.abs(draw() - before).max() > 1e-4


@pytest.mark.slow
def test_prior_preservation_draws_the_class_images_once(base: Path, tmp_path: Path) -> None:
    config = _config(base, _images(tmp_path / "img", [(32, 32)] * 2), class_prompt="a photo of a square",
                     class_images=2, max_steps=2)
    first = train(config, str(tmp_path / "runs"), report_to=())
    (cache,) = (tmp_path / "diffuse-class-images").iterdir()
    pngs = sorted(cache.glob("*.png"))
    assert [p.name for p in pngs] == ["0000.png", "0001.png"] and first.record["data"]["class_images"] == 2
    stamps = [p.stat().st_mtime_ns for p in pngs]
    second = train(config.model_copy(update={"class_images": 3}), str(tmp_path / "runs"), report_to=())
    assert [p.stat().st_mtime_ns for p in pngs] == stamps and len(list(cache.glob("*.png"))) == 3
    assert second.record["status"] == "succeeded"
    # the class loss is in the step's loss: without the class images the same seed gives another first loss
    alone = train(config.model_copy(update={"class_prompt": None}), str(tmp_path / "runs"), report_to=())
    assert alone.record["metrics"]["first_loss"] != first.record["metrics"]["first_loss"]


@pytest.mark.slow
def test_buckets_keep_the_aspect_ratio_and_grids_are_drawn(base: Path, tmp_path: Path) -> None:
    data = _images(tmp_path / "img", [(32, 32), (32, 32), (64, 32), (64, 32)])
    run = train(_config(base, data, buckets=True, validate_every=2, validation_seeds=3), str(tmp_path / "runs"),
                report_to=())
    assert run.record["data"]["buckets"] == [[32, 32], [40, 24]]  # 2:1 -> 40x24: nearest ratio
    grids = sorted((run.dir / "validation").glob("*.png"))
    assert [g.name for g in grids] == ["step-000002.png", "step-000004.png"]
    with Image.open(grids[-1]) as grid:
        assert grid.size == (3 * 32, 1 * 32)  # seeds across, prompts down (no class prompt: the trigger prompt)


def test_min_snr_weights_each_timestep_and_the_noise_offset_shifts_the_noise(base: Path) -> None:
    import diffusers

    pipe = components.load_pipeline(base, "cpu", torch.float32)
    scheduler = diffusers.DDPMScheduler.from_config(pipe.scheduler.config)
    cond = components.encode_prompts(pipe, ["a", "b"])
    latents = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(1))

    def loss(**kw: object) -> torch.Tensor:
        return components.noise_loss(pipe.unet, scheduler, latents, cond, torch.Generator().manual_seed(0), **kw)

    plain, weighted = loss(), loss(snr_gamma=5.0)
    g = torch.Generator().manual_seed(0)
    torch.randn(latents.shape, generator=g)
    t = torch.randint(0, 1000, (2,), generator=g)
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, t)  # diffusers' train_text_to_image_lora.py --snr_gamma
    torch.testing.assert_close(weighted, plain * torch.clamp(snr, max=5.0) / snr)
    assert not torch.allclose(loss(noise_offset=0.1), plain)


@pytest.mark.slow
def test_an_out_of_memory_error_steps_down_fits_ladder(base: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = components.noise_loss

    def out_of_memory_once(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(components, "noise_loss", out_of_memory_once)
    run = train(_config(base, _images(tmp_path / "img", [(32, 32)] * 2), gpu="4070ti"), str(tmp_path / "runs"),
                report_to=())
    record = json.loads((run.dir / "run.json").read_text())
    assert record["plan"]["source"].startswith("fit: fastest plan that fits")
    assert record["plan"]["predicted_gib"] == record["metrics"]["predicted_gib"] > 0
    assert [s["change"] for s in record["oom_steps"]] == ["gradient checkpointing on"]
    assert "CUDA out of memory" in record["oom_steps"][0]["error"]
    assert record["metrics"]["steps"] == 4 and record["metrics"]["oom_steps"] == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")
def test_8bit_adamw_trains_on_cuda_with_the_vae_off_the_gpu(base: Path, tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes", reason="8-bit AdamW needs bitsandbytes")
    run = train(_config(base, _images(tmp_path / "img", [(32, 32)] * 2), device="cuda", dtype="auto",
                        optimizer="adamw8bit", gpu="4070ti"), str(tmp_path / "runs"), report_to=())
    assert run.record["plan"]["fit_job"]["optimizer"] == "adamw8bit"
    assert run.record["metrics"]["steps"] == 4 and np.isfinite(run.record["metrics"]["final_loss"])
    assert run.record["peak_memory"]["gpu_allocated_gib"] > 0

"""Diffusion estimator: catalog facts, the savings users rely on, and the measured rows (measured.md section C)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

from onecard.core.gpus import lookup
from onecard.fit import diffusion, observations
from onecard.fit.job import FitJob

SDXL = diffusion.CATALOG["sdxl"]
SD15 = diffusion.CATALOG["sd15"]
A100 = lookup("a100-40gb")


def _sdxl_b4(**kw: object) -> float:
    job = FitJob(model="sdxl", job="infer", quant="fp16", batch=4, resolution=1024, **kw)  # type: ignore[arg-type]
    return diffusion.estimate(SDXL, job, A100).peak_allocated_gib


@pytest.mark.parametrize(
    "name", ["sd15", "sd-1.5", "runwayml/stable-diffusion-v1-5", "stable-diffusion-v1-5/stable-diffusion-v1-5"]
)
def test_sd15_names(name: str) -> None:
    assert diffusion.find(name) is SD15


@pytest.mark.parametrize("name", ["sdxl", "sdxl-base", "stabilityai/stable-diffusion-xl-base-1.0"])
def test_sdxl_names(name: str) -> None:
    assert diffusion.find(name) is SDXL


@pytest.mark.parametrize("name", ["sd3", "stable-diffusion-2-1", "", "llama-3.1-8b"])
def test_unknown_names(name: str) -> None:
    assert diffusion.find(name) is None


def test_param_counts_match_published() -> None:
    # SD 1.5 UNet 859.5M (unet/config.json); SDXL UNet 2.567B (SDXL report: "2.6B"); CLIP ViT-L text 123M.
    assert SD15.unet == pytest.approx(859.5e6, rel=1e-3)
    assert SDXL.unet == pytest.approx(2.567e9, rel=1e-3)
    assert SD15.text_encoders == 123_060_480


def test_vae_slicing_saves_several_gib_on_sdxl_batch4() -> None:
    assert _sdxl_b4() - _sdxl_b4(vae_slicing=True) > 4.0


def test_sequential_offload_lowers_it_further() -> None:
    sliced = _sdxl_b4(vae_slicing=True)
    assert _sdxl_b4(vae_slicing=True, offload="sequential") < sliced - 3.0


def test_model_offload_keeps_one_component() -> None:
    assert _sdxl_b4(offload="model") < _sdxl_b4()


def test_tiling_bounds_large_images() -> None:
    job = FitJob(model="sd15", quant="fp16", resolution=2048)
    tiled = job.model_copy(update={"vae_tiling": True})
    assert (
        diffusion.estimate(SD15, tiled, None).peak_allocated_gib
        < diffusion.estimate(SD15, job, None).peak_allocated_gib
    )


def test_eager_attention_costs_more_than_sdpa_in_the_unet_phase() -> None:
    job = FitJob(model="sd15", quant="fp16", attention="sdpa", vae_slicing=True, batch=4)
    eager = job.model_copy(update={"attention": "eager"})
    assert (
        diffusion.estimate(SD15, eager, None).peak_allocated_gib
        > diffusion.estimate(SD15, job, None).peak_allocated_gib
    )


def test_lora_training_knobs() -> None:
    base = FitJob(model="sdxl", job="train", batch=1, resolution=1024, grad_ckpt=False)
    full = diffusion.estimate(SDXL, base, None).peak_allocated_gib
    ckpt = diffusion.estimate(SDXL, base.model_copy(update={"grad_ckpt": True}), None).peak_allocated_gib
    cached = diffusion.estimate(SDXL, base.model_copy(update={"grad_ckpt": True, "cached_latents": True}), None)
    eight = diffusion.estimate(SDXL, base.model_copy(update={"optimizer": "adamw8bit"}), None)
    assert ckpt < full - 2.5
    assert cached.peak_allocated_gib < ckpt
    assert eight.parts["optimizer"] < diffusion.estimate(SDXL, base, None).parts["optimizer"]


# measured.md rows 33-34: huggingface/blog simple_sdxl_optimizations.md, torch.cuda.max_memory_allocated() in GiB.
@pytest.mark.parametrize(
    ("kw", "measured_gib"),
    [
        ({"quant": "fp32", "attention": "eager"}, 28.09),  # row 33
        ({"quant": "fp16", "attention": "eager"}, 21.72),  # row 34, fp16
        ({"quant": "fp16", "attention": "sdpa"}, 21.72),  # row 34, fp16 + SDPA
    ],
)
def test_sdxl_blog_rows_within_25_percent(kw: dict[str, object], measured_gib: float) -> None:
    job = FitJob(model="sdxl", batch=4, resolution=1024, **kw)  # type: ignore[arg-type]
    predicted = diffusion.estimate(SDXL, job, A100).peak_allocated_gib
    assert abs(predicted / measured_gib - 1) < 0.25


def test_sd15_issue_1934_no_offload_within_25_percent() -> None:
    # measured.md row 38: diffusers #1934, GTX 1080, nvidia-smi 5101 MiB (process).
    job = FitJob(model="sd15", quant="fp16", attention="eager")
    assert abs(diffusion.estimate(SD15, job, None).process_gib / (5101 / 1024) - 1) < 0.25


def test_the_vae_decode_leaves_cache_that_is_not_what_has_to_fit() -> None:
    job = FitJob(model="sdxl", quant="fp16")
    est = diffusion.estimate(SDXL, job, None)
    # the decoder's growing maps leave freed segments no later map fits in: gigabytes at SDXL's 1024 px in fp32 ...
    assert 2.0 < est.cache_gib < est.parts["activations"]
    # ... kept where the card has room (a 24 GB RTX 4090), only up to its size on a 12 GB RTX 4070 Ti ...
    roomy, tight = lookup("rtx-4090").usable_gib, lookup("rtx-4070-ti").usable_gib
    assert observations.predicted_figure(est, "process", roomy) == pytest.approx(est.process_gib + est.cache_gib)
    assert observations.predicted_figure(est, "process", tight) == pytest.approx(max(tight, est.process_gib))
    # ... one image's worth when the VAE slices the batch, and none for a training step
    b4 = FitJob(model="sdxl", quant="fp16", batch=4)
    sliced = diffusion.estimate(SDXL, b4.model_copy(update={"vae_slicing": True}), None)
    assert diffusion.estimate(SDXL, b4, None).cache_gib == pytest.approx(4 * sliced.cache_gib)
    assert sliced.cache_gib == pytest.approx(est.cache_gib)
    assert diffusion.estimate(SD15, FitJob(model="sd15", job="train"), None).cache_gib == 0


def test_a_replayed_pipeline_call_needs_what_the_planner_says_and_caches_what_it_adds(
        load_benchmark: Callable[[str], ModuleType]) -> None:
    # SD 1.5 at batch 1 built from its configs on fake tensors, its allocations replayed through the caching
    # allocator's rules (benchmarks/fit_diffusion_replay.py prints the same for SD 1.5 and SDXL at batch 1-4)
    pytest.importorskip("diffusers")
    replay = load_benchmark("fit_diffusion_replay")
    weights, allocated, reserved, least = replay.replay("sd15", steps=1, batch=1)
    est = diffusion.estimate(SD15, FitJob(model="sd15", quant="fp16"), None)
    assert weights == pytest.approx(est.parts["weights"], rel=0.01)
    # what has to fit covers the least capacity the call finishes in (the planner adds cuDNN's workspace on top) ...
    assert least <= est.peak_reserved_gib
    # ... and a card with room holds about the planner's cache besides
    assert reserved - least == pytest.approx(est.cache_gib, rel=0.10)

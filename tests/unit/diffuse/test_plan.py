"""Memory settings from `onecard fit`: the auto knobs take fit's fastest plan for the card (what `fit --solve` ranks
first), the knobs the user set stay, no card means plain defaults said so, and the out-of-memory ladder leaves out
the 8-bit optimizer where bitsandbytes cannot run."""

from __future__ import annotations

from onecard.diffuse.plan import plan_sample, plan_train, train_ladder
from onecard.fit.job import FitJob
from onecard.fit.solve import solve


def _train(**kw: object) -> tuple:
    args = dict(rank=8, resolution=512, batch_size=2, gradient_checkpointing="auto", optimizer="auto", gpu="4070ti",
                on_cuda=True, eight_bit=True)
    return plan_train("sd15", **{**args, **kw})  # type: ignore[arg-type]


def test_training_takes_fits_fastest_plan_for_the_card() -> None:
    settings, job = _train()
    request = FitJob(model="sd15", job="train", lora_rank=8, resolution=512, batch=2, cached_latents=True,
                     optimizer="adamw", gpu="4070ti", grad_ckpt=False)
    best = solve(request, top=1, fixed={"lora_rank", "cached_latents", "resolution", "attention"},
                 request_first=False)[0]
    assert job == best.job and job.cached_latents and job.attention == "sdpa"
    assert settings.source.startswith("fit: fastest plan that fits") and settings.card
    assert settings.predicted_gib == round(best.estimate.process_gib, 3)
    assert job.batch * job.grad_accum == 2  # the images per step stay what was asked


def test_the_knobs_the_user_set_stay() -> None:
    _, job = _train(gradient_checkpointing=True, optimizer="adamw8bit")
    assert job.grad_ckpt is True and job.optimizer == "adamw8bit"
    _, job = _train(eight_bit=False)  # no bitsandbytes: 8-bit AdamW is never planned
    assert job.optimizer == "adamw"
    settings, job = _train(batch_size=4, micro_batch_size=1)
    assert (job.batch, job.grad_accum) == (1, 4) and settings.fit_job["batch"] == 1


def test_without_a_card_the_defaults_are_kept_and_said() -> None:
    settings, job = _train(gpu=None, on_cuda=False)
    assert settings.source.startswith("defaults: no GPU") and settings.predicted_gib is None
    assert (job.grad_ckpt, job.optimizer, job.batch) == (False, "adamw", 2)


def test_the_ladder_skips_the_8bit_optimizer_without_bitsandbytes() -> None:
    _, job = _train(gradient_checkpointing=False)
    with_8bit = [change for _, change in train_ladder(job, eight_bit=True)]
    without = [(j, change) for j, change in train_ladder(job, eight_bit=False)]
    assert any("adamw8bit" in c for c in with_8bit)
    assert without and all(j.optimizer == "adamw" for j, _ in without)
    assert "gradient checkpointing on" in without[0][1]


def test_sampling_plans_the_savers_sdxl_needs_on_12_gb() -> None:
    settings, job = plan_sample("sdxl", batch=1, resolution=1024, fp32=False, knobs={}, gpu="4070ti", on_cuda=True)
    request = FitJob(model="sdxl", job="infer", batch=1, resolution=1024, quant="fp16", gpu="4070ti")
    assert job == solve(request, top=1, fixed={"batch", "resolution", "quant"}, request_first=False)[0].job
    assert settings.predicted_gib is not None and settings.predicted_gib < 12
    _, kept = plan_sample("sdxl", batch=1, resolution=1024, fp32=False, knobs={"offload": "sequential"},
                          gpu="4070ti", on_cuda=True)
    assert kept.offload == "sequential"
    _, cpu = plan_sample("sd15", batch=1, resolution=None, fp32=True, knobs={}, gpu=None, on_cuda=False)
    assert cpu.offload == "none" and not cpu.vae_slicing

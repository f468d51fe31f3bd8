"""Memory settings of `onecard diffuse train` and `sample` from `onecard fit`, and the out-of-memory ladder.

Training: the knobs left on "auto" (gradient checkpointing, the 8-bit AdamW of bitsandbytes, the micro-batch with
gradient accumulation at the same images per step) take fit's fastest plan that fits the card (`fit.solve`, with the
latents cached, as `train` always does, and SDPA attention, diffusers' default). Sampling: VAE slicing and tiling, model
or sequential CPU offload and attention slicing, the same way. The pipeline is planned as the family it belongs to (SD
1.5 or SDXL, fit's diffusion catalog). Without a card to plan for (a CPU run, no --gpu/--vram) there is no memory
budget: the auto knobs take plain defaults, and the record says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from onecard.core.errors import OnecardError
from onecard.fit.choose import split_batch
from onecard.fit.job import FitJob
from onecard.fit.ladder import oom_ladder_keeping
from onecard.fit.plan import plan
from onecard.fit.solve import solve

__all__ = ["Settings", "plan_train", "plan_sample", "train_ladder", "sample_ladder", "apply_sample_settings",
           "eight_bit_usable"]


@dataclass
class Settings:
    """The memory knobs a run uses, where they came from, and the fit job they stand for (fit predicts it again)."""

    source: str
    fit_job: dict[str, Any]
    card: str | None = None
    predicted_gib: float | None = None  # what nvidia-smi would show for the process, beside the measured peak

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _choose(job: FitJob, fixed: set[str], on_gpu: bool, what: str) -> tuple[Settings, FitJob]:
    """fit's fastest plan that fits the card, or the job as given (plain defaults) when there is no card."""
    base = plan(job)
    if base.card is None or (not on_gpu and job.gpu is None and job.vram is None):
        return Settings("defaults: no GPU to plan for (--gpu NAME plans for a card)", job.model_dump(mode="json")), job
    found = [p for p in solve(job, top=20, fixed=fixed, request_first=False) if p.fits]
    if not found:
        size = job.batch * job.grad_accum if job.job == "train" else job.batch
        flag = "--batch-size" if job.job == "train" else "--batch"
        command = (f"onecard fit {job.model} --job {job.job} --resolution {job.resolution} --batch {job.batch}"
                   + (f" --grad-accum {job.grad_accum}" if job.grad_accum > 1 else "")
                   + (f" --gpu {job.gpu}" if job.gpu else "") + " --solve")
        raise OnecardError(f"no setting of {job.model} fits {base.card.name} for {what} at {job.resolution} px, "
                           f"{flag} {size}", f"see `{command}`; lower --resolution or {flag}, or name a larger "
                           "card with --gpu")
    best = found[0]
    return (Settings(f"fit: fastest plan that fits {base.card.name}", best.job.model_dump(mode="json"),
                     base.card.name, round(best.estimate.process_gib, 3)), best.job)


def plan_train(arch: str, *, rank: int, resolution: int, batch_size: int, gradient_checkpointing: bool | str,
               optimizer: str, gpu: str | None, on_cuda: bool, eight_bit: bool,
               micro_batch_size: int | str = "auto") -> tuple[Settings, FitJob]:
    """The training job fit plans (`arch`: sd15 or sdxl), and its settings; `eight_bit`: bitsandbytes is usable.
    The job's batch is the micro-batch, `batch_size` = batch x grad_accum (fit splits it unless `micro_batch_size`)."""
    fixed = {"lora_rank", "cached_latents", "resolution", "attention"}
    micro, accum = batch_size, 1
    if micro_batch_size != "auto":
        micro, accum = split_batch(batch_size, micro_batch_size)
        fixed |= {"batch", "grad_accum"}
    if gradient_checkpointing != "auto":
        fixed.add("grad_ckpt")
    if optimizer != "auto" or not eight_bit:
        fixed.add("optimizer")
    job = FitJob.model_validate({
        "model": arch, "job": "train", "lora_rank": rank, "resolution": max(64, resolution), "batch": micro,
        "grad_accum": accum, "cached_latents": True, "grad_ckpt": gradient_checkpointing is True,
        "optimizer": "adamw" if optimizer == "auto" else optimizer, "gpu": gpu})
    return _choose(job, fixed, on_cuda, "LoRA training")


def plan_sample(arch: str, *, batch: int, resolution: int | None, fp32: bool, knobs: dict[str, Any],
                gpu: str | None, on_cuda: bool) -> tuple[Settings, FitJob]:
    """The generation job fit plans; `knobs` are the memory flags the user set (the others are fit's)."""
    fixed = {"batch", "resolution", "quant", *knobs}
    if not on_cuda:  # offload moves weights between the CPU and the GPU: nothing to move on a CPU run
        fixed.add("offload")
    job = FitJob.model_validate({"model": arch, "job": "infer", "batch": batch,
                                 "resolution": resolution and max(64, resolution), "quant": "fp32" if fp32 else "fp16",
                                 "gpu": gpu, **knobs})
    return _choose(job, fixed, on_cuda, "generation")


def train_ladder(job: FitJob, eight_bit: bool) -> Iterator[tuple[FitJob, str]]:
    """fit's out-of-memory ladder for the training job, less the 8-bit optimizer where bitsandbytes is not usable."""
    return oom_ladder_keeping(job, {} if eight_bit else {"optimizer": job.optimizer})


def sample_ladder(job: FitJob, on_cuda: bool) -> Iterator[tuple[FitJob, str]]:
    """fit's out-of-memory ladder for the generation job, less CPU offload where there is no GPU to offload from."""
    return oom_ladder_keeping(job, {} if on_cuda else {"offload": job.offload})




def apply_sample_settings(pipe: Any, job: FitJob, device: str) -> None:
    """Turn a planned generation job's savers on in a diffusers pipeline (offload places the pipeline itself)."""
    if job.vae_slicing:
        pipe.vae.enable_slicing()
    if job.vae_tiling:
        pipe.vae.enable_tiling()
    if job.attention == "slicing":
        pipe.enable_attention_slicing()
    if job.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif job.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)


def eight_bit_usable(device: str) -> bool:
    """Whether bitsandbytes' 8-bit AdamW can run: a CUDA device and the package installed."""
    from onecard.core.extras import available

    return device.startswith("cuda") and available("bitsandbytes")


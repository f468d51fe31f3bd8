"""Memory settings from `onecard fit` for the detected card: llama.cpp's context and GPU layers, transformers' quant.

Users of llama.cpp guess `-c` and `-ngl`; here the planner answers for the card it finds (or `gpu`, a catalog name,
to ask "what would it pick on a 4070 Ti"). Without a GPU everything stays on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Fitted", "fit_llamacpp", "fit_transformers", "CTX_CHOICES", "CPU_CTX"]

# Contexts tried, longest first: the longest with every layer on the GPU wins. 8192 covers a long chat or a RAG
# prompt with several passages; longer costs prompt time on every turn, so it is asked for with --ctx.
CTX_CHOICES = (8192, 4096, 2048)
CPU_CTX = 4096  # on CPU the KV cache is in RAM and small models are the norm: 4096 is llama.cpp's own default


@dataclass
class Fitted:
    """The chosen settings and why."""

    ctx: int
    gpu_layers: int
    card: str | None
    notes: list[str] = field(default_factory=list)
    quant: str | None = None  # transformers: nf4, bf16, fp16 or fp32


def fit_llamacpp(path: Path, ctx: int | None = None, gpu_layers: int | None = None,
                 gpu: str | None = None) -> Fitted:
    """The context and number of GPU layers for a GGUF file: what the user set, the rest from the planner.

    Args:
        path: the .gguf file.
        ctx: the context the user asked for; None: the longest of CTX_CHOICES that keeps every layer on the GPU.
        gpu_layers: the layers the user asked for; None: as many as fit.
        gpu: plan for this catalog card instead of the detected one.
    """
    from onecard.core import device, gpus

    card = gpus.lookup(gpu) if gpu else device.local_gpu()
    if ctx is not None and gpu_layers is not None:
        return Fitted(ctx, gpu_layers, card.name if card else None, ["context and GPU layers as given"])
    from onecard.fit.readers import read_path

    arch = read_path(path)
    if card is None:
        chosen = ctx or min(arch.max_ctx, CPU_CTX)
        asked = f" (--gpu-layers {gpu_layers} has no GPU to use)" if gpu_layers else ""
        return Fitted(chosen, gpu_layers or 0, None,
                      [f"no GPU found: all {arch.n_layers} layers on the CPU{asked}, context {chosen}"])
    from onecard.fit.job import FitJob
    from onecard.fit.plan import plan

    tries = [ctx] if ctx else sorted({min(arch.max_ctx, c) for c in CTX_CHOICES}, reverse=True)
    for n_ctx in tries:
        planned = plan(FitJob.model_validate({"model": str(path), "runtime": "llama.cpp", "ctx": n_ctx,
                                              "gpu_layers": gpu_layers, "gpu": card.key}))
        layers = planned.estimate.gpu_layers or 0
        # the longest context that keeps every layer on the GPU; with the layers given, the longest that fits them
        if planned.fits and (layers > arch.n_layers or ctx is not None or gpu_layers is not None):
            break
    note = (f"onecard fit on {card.name} ({card.vram_gib:g} GiB): context {n_ctx}, "
            f"{min(layers, arch.n_layers)}/{arch.n_layers} layers on the GPU"
            + (" + output layer" if layers > arch.n_layers else "")
            + (f", predicted {planned.estimate.process_gib:.1f} GiB" if planned.fits else ", does not fit"))
    return Fitted(n_ctx, layers, card.name, [note])


def fit_transformers(model: str, quant: str = "auto", ctx: int | None = None, gpu: str | None = None) -> Fitted:
    """The weight format for a transformers model: bf16 when it fits the card, else nf4 (bitsandbytes, CUDA only)."""
    from onecard.core import device, gpus

    card = gpus.lookup(gpu) if gpu else device.local_gpu()
    n_ctx = ctx or CPU_CTX
    if quant != "auto":
        return Fitted(n_ctx, 0, card.name if card else None, [f"weights {quant} as given"], quant)
    if card is None:
        return Fitted(n_ctx, 0, None, ["no GPU found: fp32 weights on the CPU"], "fp32")
    from onecard.fit.job import FitJob
    from onecard.fit.plan import plan

    job = {"model": model, "runtime": "transformers", "ctx": n_ctx, "gpu": card.key}
    bf16 = plan(FitJob.model_validate({**job, "quant": "bf16"}))
    if bf16.fits:
        return Fitted(n_ctx, 0, card.name, [f"onecard fit on {card.name}: bf16 weights fit "
                                            f"({bf16.estimate.process_gib:.1f} GiB predicted)"], "bf16")
    nf4 = plan(FitJob.model_validate({**job, "quant": "nf4"}))
    return Fitted(n_ctx, 0, card.name, [f"onecard fit on {card.name}: bf16 needs {bf16.estimate.process_gib:.1f} GiB, "
                                        f"nf4 {nf4.estimate.process_gib:.1f} GiB: nf4 (bitsandbytes 4-bit)"], "nf4")

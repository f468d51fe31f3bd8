"""Turn the "auto" knobs of a VLM tune into numbers with `onecard.fit`, and step down its ladder after an OOM.

fit sizes a LLaVA-style train job from the model folder's config.json (`onecard.fit.readers`): the vision tower and
projector as frozen 16-bit weights (kept out of NF4, as `model.load_model` loads them), the image tokens added to
each sequence (`fit.llm_train`: seq + image tokens), LoRA on the language model's linear layers. It plans with the
`onecard` stack: TRL's SFTTrainer (its fused LM head) with PEFT adapters at lora_dropout 0.05, what `vlm tune` runs.
The job's `seq` is the text part of a row; `Settings.max_seq_length` adds the image tokens back (what a row may hold).
Without a card to plan for (a CPU run, no --gpu/--vram) the auto knobs take plain defaults, and the record says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from onecard.core.errors import ConfigError, OnecardError
from onecard.fit.job import FitJob
from onecard.fit.knobs import optimizer_of
from onecard.fit.ladder import describe_changes, oom_ladder
from onecard.fit.plan import plan
from onecard.fit.solve import solve
from onecard.vlm.config import TuneConfig

__all__ = ["Settings", "choose", "settings_of", "ladder", "HF_OPTIMIZER"]

# fit's optimizer names -> the transformers Trainer's `optim` names
HF_OPTIMIZER = {"adamw": "adamw_torch_fused", "adamw8bit": "adamw_bnb_8bit", "paged_adamw8bit": "paged_adamw_8bit",
                "paged_adamw": "paged_adamw_32bit", "adafactor": "adafactor", "sgd": "sgd"}
FIT_OPTIMIZER = {v: k for k, v in HF_OPTIMIZER.items()}
CPU_MICRO_BATCH = 8  # no card to plan for: rows per forward pass on the CPU


@dataclass
class Settings:
    """The values a training run uses, where they came from, and the fit job they correspond to."""

    method: str  # lora | qlora
    micro_batch_size: int
    grad_accum: int
    gradient_checkpointing: bool
    optimizer: str  # a Trainer `optim` name
    max_seq_length: int  # tokens per row, image tokens included
    image_tokens: int
    source: str
    card: str | None = None
    predicted_gib: float | None = None  # what nvidia-smi would show (process)
    budget_gib: float | None = None
    predicted_allocated_gib: float | None = None
    predicted_reserved_gib: float | None = None
    fit_job: dict[str, Any] | None = None  # the fit job these settings stand for: `onecard fit` predicts it again

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.method}, micro-batch {self.micro_batch_size} x {self.grad_accum} accumulation, "
                f"gradient checkpointing {'on' if self.gradient_checkpointing else 'off'}, {self.optimizer}, "
                f"sequence {self.max_seq_length} ({self.image_tokens} image tokens)")


def settings_of(job: FitJob, image_tokens: int, source: str, planned: Any = None) -> Settings:
    """The Settings a fit job stands for, with the plan's predicted peaks when it was planned for a card."""
    est = planned.estimate if planned is not None else None
    card = planned.card if planned is not None else None
    return Settings(
        method=job.method, micro_batch_size=job.batch, grad_accum=job.grad_accum, gradient_checkpointing=job.grad_ckpt,
        optimizer=HF_OPTIMIZER[optimizer_of(job, "llm")], max_seq_length=job.seq + image_tokens,
        image_tokens=image_tokens, source=source, card=card.name if card is not None else None,
        predicted_gib=round(est.process_gib, 3) if est is not None else None,
        budget_gib=round(planned.budget_gib, 3) if planned is not None and planned.budget_gib is not None else None,
        predicted_allocated_gib=round(est.peak_allocated_gib, 3) if est is not None else None,
        predicted_reserved_gib=round(est.peak_reserved_gib, 3) if est is not None else None,
        fit_job=job.model_dump(mode="json"))


def _request(config: TuneConfig, model: str, seq: int, four_bit: bool) -> tuple[FitJob, set[str]]:
    """The fit job for the config, and the knobs the user fixed (or this device fixes)."""
    fixed = {"lora_rank", "lora_targets"}
    if config.method == "qlora" and not four_bit:
        raise ConfigError("QLoRA needs an NVIDIA GPU with bitsandbytes (4-bit weights), which this machine lacks",
                          "use --method lora (or auto), or run on a CUDA machine with `pip install bitsandbytes`")
    if config.method != "auto" or not four_bit:
        fixed.add("method")
    optimizer = "auto" if config.optimizer == "auto" else FIT_OPTIMIZER[config.optimizer]
    if config.optimizer != "auto" or not four_bit:
        fixed.add("optimizer")
        optimizer = optimizer if config.optimizer != "auto" else "adamw"  # 8-bit optimizers need bitsandbytes
    batch, accum = config.batch_size, 1
    if config.micro_batch_size != "auto":
        batch, accum = config.micro_batch_size, math.ceil(config.batch_size / config.micro_batch_size)
        fixed |= {"batch", "grad_accum"}
    if config.gradient_checkpointing != "auto":
        fixed.add("grad_ckpt")
    if config.max_seq_length != "auto":
        fixed.add("seq")
    job = FitJob(model=model, job="train", method="lora" if config.method == "auto" else config.method, seq=seq,
                 batch=batch, grad_accum=accum, lora_rank=config.lora_rank, lora_targets=config.lora_targets,
                 optimizer=optimizer, grad_ckpt=config.gradient_checkpointing is not False, stack="onecard",
                 lora_dropout=config.lora_dropout, gpu=config.gpu, vram=config.vram)
    return job, fixed


def choose(config: TuneConfig, model: str, longest_text: int, image_tokens: int, four_bit: bool,
           on_gpu: bool) -> tuple[Settings, FitJob]:
    """Resolve every "auto" knob; returns the settings and the fit job they correspond to (for the OOM ladder).

    Args:
        config: the tune config.
        model: the model folder (fit reads its config.json).
        longest_text: the longest training row's text tokens (image tokens left out).
        image_tokens: the image tokens of the row with the most.
        four_bit: whether 4-bit weights and 8-bit optimizers run here.
        on_gpu: whether training runs on a GPU (plans for the detected card); on a CPU only a named card is planned.
    """
    if config.max_seq_length != "auto":
        seq = config.max_seq_length - image_tokens
        if seq < 1:
            raise ConfigError(f"max_seq_length {config.max_seq_length} leaves no room for text next to the "
                              f"{image_tokens} image tokens of a row", f"set it above {image_tokens}, or auto")
    else:
        seq = -(-longest_text // 64) * 64
    job, fixed = _request(config, model, seq, four_bit)
    if not on_gpu and config.gpu is None and config.vram is None:
        micro = config.micro_batch_size if config.micro_batch_size != "auto" else min(config.batch_size,
                                                                                         CPU_MICRO_BATCH)
        job = job.model_copy(update={"batch": micro, "grad_accum": math.ceil(config.batch_size / micro),
                                     "grad_ckpt": config.gradient_checkpointing is True})
        return settings_of(job, image_tokens, "defaults: no GPU to plan for (pass --gpu NAME to plan for a card)"), job
    base = plan(job)
    if base.card is None:
        return settings_of(job, image_tokens, "defaults: no card detected (pass --gpu NAME or --vram GIB)", base), job
    found = [p for p in solve(job, top=20, fixed=fixed, request_first=False) if p.job.method in ("lora", "qlora")]
    if not found:
        raise OnecardError(
            f"no setting of {model} fits {base.card.name} ({base.card.vram_gib} GiB) for training at {seq} text + "
            f"{image_tokens} image tokens with the knobs you fixed "
            f"({', '.join(sorted(fixed - {'lora_rank', 'lora_targets'})) or 'none'})",
            f"see the budget with `onecard fit {model} --job train --method qlora --seq {seq} --stack onecard "
            f"--solve{' --gpu ' + config.gpu if config.gpu else ''}`, then shorten the rows or use a smaller model")
    best = found[0]
    return settings_of(best.job, image_tokens, f"fit: fastest plan that fits {base.card.name}", best), best.job


def ladder(job: FitJob, four_bit: bool) -> Iterator[tuple[FitJob, str]]:
    """fit's out-of-memory ladder, less the steps this machine cannot take (4-bit and 8-bit need bitsandbytes)."""
    keep = {"method": job.method, "quant": job.quant, "optimizer": job.optimizer}
    previous = job
    for new, reason in oom_ladder(job):
        if not four_bit and (new.method == "qlora" or optimizer_of(new, "llm") != "adamw"):
            new = new.model_copy(update=keep)  # later steps build on this one: take them without the 4/8-bit part
            if new == previous:
                continue
            reason = describe_changes(previous, new)
        yield new, reason
        previous = new

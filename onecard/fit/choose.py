"""Turn the "auto" knobs of a PEFT (LoRA/QLoRA) training run into numbers, and walk the ladder this machine can take.

The pieces `tune` and `vlm tune` share (floor-3 capabilities may not import each other): the `Settings` a run uses,
the map between fit's optimizer names and the transformers Trainer's, the fit job a config asks for with the knobs
the user fixed, the search for the fastest plan that fits the card (plain defaults where there is no card to plan
for), and fit's out-of-memory ladder less the 4-bit/8-bit steps where bitsandbytes does not run. A capability keeps
what is its own: how the sequence length comes from its rows (vlm adds image tokens) and the wording of its errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from onecard.core.errors import ConfigError, OnecardError
from onecard.fit.job import FitJob
from onecard.fit.knobs import optimizer_of
from onecard.fit.ladder import describe_changes, oom_ladder
from onecard.fit.plan import Plan, plan
from onecard.fit.solve import solve
from onecard.fit.stacks import installed_trl

__all__ = ["HF_OPTIMIZER", "FIT_OPTIMIZER", "CPU_MICRO_BATCH", "PeftKnobs", "Settings", "settings_of", "request",
           "split_batch",
           "choose", "ladder"]

# fit's optimizer names -> the transformers Trainer's `optim` names
HF_OPTIMIZER = {"adamw": "adamw_torch_fused", "adamw8bit": "adamw_bnb_8bit", "paged_adamw8bit": "paged_adamw_8bit",
                "paged_adamw": "paged_adamw_32bit", "adafactor": "adafactor", "sgd": "sgd"}
FIT_OPTIMIZER = {v: k for k, v in HF_OPTIMIZER.items()}
CPU_MICRO_BATCH = 8  # no card to plan for: rows per forward pass on the CPU


def split_batch(batch: int, micro: int | str) -> tuple[int, int]:
    """(micro-batch, accumulation steps) whose product is exactly the effective `batch`: the user's micro-batch,
    which must divide it, or ("auto") the largest divisor of it up to `CPU_MICRO_BATCH`.

    Raises:
        ConfigError: a micro-batch that does not divide the batch (the steps would train on more rows than asked).
    """
    if micro == "auto":
        size = max(d for d in range(1, min(batch, CPU_MICRO_BATCH) + 1) if batch % d == 0)
        return size, batch // size
    size, steps = int(micro), -(-batch // int(micro))
    if size > batch or batch % size:
        divisors = [d for d in range(1, batch + 1) if batch % d == 0]
        raise ConfigError(f"--micro-batch-size {size} does not divide --batch-size {batch}: {size} x {steps} steps "
                          f"would train on {size * steps} rows per optimizer step",
                          f"give --micro-batch-size one of {', '.join(map(str, divisors))}, or auto")
    return size, steps


class PeftKnobs(Protocol):
    """The fields of a PEFT training config (`tune`'s, `vlm`'s) that planning reads."""

    @property
    def method(self) -> str: ...  # auto | lora | qlora
    @property
    def optimizer(self) -> str: ...  # auto or a Trainer `optim` name
    @property
    def batch_size(self) -> int: ...
    @property
    def micro_batch_size(self) -> int | str: ...
    @property
    def gradient_checkpointing(self) -> bool | str: ...
    @property
    def max_seq_length(self) -> int | str: ...
    @property
    def lora_rank(self) -> int: ...
    @property
    def lora_targets(self) -> str: ...
    @property
    def lora_dropout(self) -> float: ...
    @property
    def gpu(self) -> str | None: ...
    @property
    def vram(self) -> float | None: ...


@dataclass
class Settings:
    """The values a training run uses, where they came from, and the fit job they correspond to."""

    method: str  # lora | qlora
    micro_batch_size: int
    grad_accum: int
    gradient_checkpointing: bool
    optimizer: str  # a Trainer `optim` name
    max_seq_length: int  # tokens per row, image tokens included
    source: str
    card: str | None = None
    predicted_gib: float | None = None  # what nvidia-smi would show (process)
    budget_gib: float | None = None
    # beside the record's measured peak_memory (gpu_allocated_gib, gpu_reserved_gib): the planner's figures for them
    predicted_allocated_gib: float | None = None
    predicted_reserved_gib: float | None = None
    fit_job: dict[str, Any] | None = None  # the fit job these settings stand for: `onecard fit` predicts it again
    image_tokens: int | None = None  # a vision-language run: the image tokens of the row with the most

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if self.image_tokens is None:
            del out["image_tokens"]  # a text run's record has no such key
        return out

    def describe(self) -> str:
        images = f" ({self.image_tokens} image tokens)" if self.image_tokens is not None else ""
        return (f"{self.method}, micro-batch {self.micro_batch_size} x {self.grad_accum} accumulation, "
                f"gradient checkpointing {'on' if self.gradient_checkpointing else 'off'}, {self.optimizer}, "
                f"sequence {self.max_seq_length}{images}")


def settings_of(job: FitJob, source: str, planned: Plan | None = None, image_tokens: int | None = None) -> Settings:
    """The Settings a fit job stands for, with the plan's predicted peaks when it was planned for a card.

    `job.seq` is the text part of a row; with `image_tokens` the settings' max_seq_length adds them back.
    """
    est = planned.estimate if planned is not None else None
    card = planned.card if planned is not None else None
    return Settings(
        method=job.method, micro_batch_size=job.batch, grad_accum=job.grad_accum, gradient_checkpointing=job.grad_ckpt,
        optimizer=HF_OPTIMIZER[optimizer_of(job, "llm")], max_seq_length=job.seq + (image_tokens or 0), source=source,
        card=card.name if card is not None else None,
        predicted_gib=round(est.process_gib, 3) if est is not None else None,
        budget_gib=round(planned.budget_gib, 3) if planned is not None and planned.budget_gib is not None else None,
        predicted_allocated_gib=round(est.peak_allocated_gib, 3) if est is not None else None,
        predicted_reserved_gib=round(est.peak_reserved_gib, 3) if est is not None else None,
        fit_job=job.model_dump(mode="json"), image_tokens=image_tokens)


def request(config: PeftKnobs, model: str, seq: int, four_bit: bool,
            extra: dict[str, Any] | None = None) -> tuple[FitJob, set[str]]:
    """The fit job for the config (with `extra` FitJob fields, such as a VLM's train_projector), and the knobs the user
    fixed (or this device fixes)."""
    fixed = {"lora_rank", "lora_targets"}
    method = config.method
    if method == "qlora" and not four_bit:
        raise ConfigError("QLoRA needs an NVIDIA GPU with bitsandbytes (4-bit weights), which this machine lacks",
                          "use --method lora (or auto), or run on a CUDA machine with `pip install bitsandbytes`")
    if method != "auto" or not four_bit:
        fixed.add("method")
    optimizer = "auto" if config.optimizer == "auto" else FIT_OPTIMIZER[config.optimizer]
    if config.optimizer != "auto" or not four_bit:
        fixed.add("optimizer")
        optimizer = optimizer if config.optimizer != "auto" else "adamw"  # 8-bit optimizers need bitsandbytes
    batch, accum = config.batch_size, 1
    if config.micro_batch_size != "auto":
        batch, accum = split_batch(config.batch_size, config.micro_batch_size)
        fixed |= {"batch", "grad_accum"}
    if config.gradient_checkpointing != "auto":
        fixed.add("grad_ckpt")
    if config.max_seq_length != "auto":
        fixed.add("seq")
    job = FitJob.model_validate(dict(
        model=model, job="train", method="lora" if method == "auto" else method, seq=seq, batch=batch, grad_accum=accum,
        lora_rank=config.lora_rank, lora_targets=config.lora_targets, optimizer=optimizer,
        grad_ckpt=config.gradient_checkpointing is not False, stack="onecard", lora_dropout=config.lora_dropout,
        trl_version=installed_trl(),  # the loss `tune` runs is the installed TRL's (stacks.trl_release)
        gpu=config.gpu, vram=config.vram, **(extra or {})))
    return job, fixed


def choose(config: PeftKnobs, model: str, seq: int, four_bit: bool, on_gpu: bool, *, image_tokens: int | None = None,
           extra: dict[str, Any] | None = None, rows: str, remedy: str) -> tuple[Settings, FitJob]:
    """Resolve every "auto" knob at text length `seq`; returns the settings and the fit job they stand for.

    With no card to plan for (on the CPU with no --gpu/--vram, or no card detected) the auto knobs take plain
    defaults; else the fastest LoRA/QLoRA plan that fits the card, keeping the knobs the user fixed.

    Args:
        config: the training config.
        model: the model folder (fit reads its config.json).
        seq: the text tokens per row the job plans for.
        four_bit: whether 4-bit weights and 8-bit optimizers run here.
        on_gpu: whether training runs on a GPU (plans for the detected card); on a CPU only a named card is planned.
        image_tokens: a vision-language run's image tokens per row (added to the settings' max_seq_length).
        extra: more FitJob fields the run fixes (a VLM's train_projector).
        rows: what a row holds, for the error when nothing fits ("sequence 512").
        remedy: how to make rows fit, for that error ("lower --max-seq-length").
    """
    job, fixed = request(config, model, seq, four_bit, extra)
    if not on_gpu and config.gpu is None and config.vram is None:
        micro, accum = split_batch(config.batch_size, config.micro_batch_size)
        job = job.model_copy(update={"batch": micro, "grad_accum": accum,
                                     "grad_ckpt": config.gradient_checkpointing is True})
        return settings_of(job, "defaults: no GPU to plan for (pass --gpu NAME to plan for a card)",
                           image_tokens=image_tokens), job
    base = plan(job)
    if base.card is None:
        return settings_of(job, "defaults: no card detected (pass --gpu NAME or --vram GIB)", base, image_tokens), job
    found = [p for p in solve(job, top=20, fixed=fixed, request_first=False) if p.job.method in ("lora", "qlora")]
    if not found:
        here = "" if four_bit else "; this machine has no bitsandbytes, so no QLoRA or 8-bit optimizer"
        asked = sorted(k for k in fixed - {"lora_rank", "lora_targets"} if four_bit or k not in ("method", "optimizer"))
        card = f" --gpu {config.gpu}" if config.gpu else f" --vram {config.vram:g}" if config.vram else ""
        raise OnecardError(
            f"no setting of {model} fits {base.card.name} ({base.card.vram_gib} GiB) for training at {rows} "
            f"with the knobs you fixed ({', '.join(asked) or 'none'}){here}",
            f"see the budget with `onecard fit {model} --job train --method {'qlora' if four_bit else 'lora'} "
            f"--seq {seq} --stack onecard{card} --solve`, then {remedy} or use a smaller model")
    best = found[0]
    return settings_of(best.job, f"fit: fastest plan that fits {base.card.name}", best, image_tokens), best.job


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

"""The space of knobs `fit` searches: what each knob means for a model family, the values it may take, and the
steps that lower the peak. `solve` walks the space (every combination, ranked); `ladder` walks the steps (one at a
time after an out-of-memory error, or a few together as the cheapest fixes). Neither adds knob knowledge of its own.

- `family`, `effective_quant`, `optimizer_of`, `bits`, `is_gguf`: what a job's "auto" knobs and names stand for.
- `space`, `candidates`: the values solve tries, and the coherent jobs they combine into.
- `request_knobs`, `gives_up`: the sizes that define what the user asked for, and what a plan gives up of them.
- `Step`, `steps`: the memory-lowering changes per family, in the guide's (ladder) order, each with its cost.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from onecard.core.errors import OnecardError
from onecard.fit import stacks
from onecard.fit.catalog import find
from onecard.fit.job import FitJob
from onecard.fit.plan import Family, resolve_arch

__all__ = ["Family", "Step", "Apply", "family", "is_gguf", "bits", "effective_quant", "optimizer_of", "flash_for_kv",
           "space", "candidates", "request_knobs", "gives_up", "steps", "SEQ_FLOOR", "CTX_FLOOR"]

Apply = Callable[[FitJob], "FitJob | None"]

SEQ_FLOOR = 512  # training sequences are not halved below this: shorter examples lose most of their content
CTX_FLOOR = 2048  # inference contexts are not halved below this
FOUR_BIT = ("nf4", "fp4", "gptq", "awq")
_RUNTIME_FAMILY: dict[str, Family] = {
    "diffusers": "diffusion", "ultralytics": "yolo", "openai-whisper": "whisper", "faster-whisper": "whisper"}


# What a job's knobs stand for.

def family(job: FitJob) -> Family:
    """The model family of a job: from its runtime, else from what the planner resolves its model to.

    A model the planner cannot resolve counts as an LLM (the ladder still works for it, step by step).
    """
    if job.runtime in _RUNTIME_FAMILY:
        return _RUNTIME_FAMILY[job.runtime]
    try:
        return resolve_arch(job.model).family
    except OnecardError:
        return "llm"


def is_gguf(job: FitJob) -> bool:
    """Whether the job runs a GGUF model (llama.cpp or Ollama), whose weight formats are the GGUF types."""
    return job.runtime in ("llama.cpp", "ollama") or job.model.lower().endswith(".gguf")


def bits(quant: str) -> float:
    """Bits per weight of a weight format, for ordering formats (GGUF: llama.cpp's `quantize` table)."""
    table = {"fp32": 32.0, "fp16": 16.0, "f16": 16.0, "bf16": 16.0, "int8": 8.0, "q8_0": 8.5, "q6_k": 6.56,
             "q5_k_m": 5.69, "q5_0": 5.5, "q4_k_m": 4.85, "q4_0": 4.5, "nf4": 4.0, "fp4": 4.0, "gptq": 4.0, "awq": 4.0}
    return table.get(quant.lower(), 16.0)


def effective_quant(job: FitJob) -> str:
    """The weight format a job runs with once "auto" is resolved (nf4 for qlora, else 16-bit)."""
    if job.quant != "auto":
        return job.quant
    if job.job == "train" and job.method == "qlora":
        return "nf4"
    return "q4_k_m" if is_gguf(job) else "bf16"  # as llm.parse_quant resolves "auto" for a catalog model


def optimizer_of(job: FitJob, fam: Family) -> str:
    """The optimizer a job runs with once "auto" is resolved: paged 8-bit AdamW for LLM qlora, else AdamW."""
    if job.optimizer != "auto":
        return job.optimizer
    return "paged_adamw8bit" if fam == "llm" and job.method == "qlora" else "adamw"


def flash_for_kv(job: FitJob, kv_dtype: str) -> dict[str, str]:
    """llama.cpp quantizes the V cache only with flash attention on: the attention change a KV dtype needs."""
    gguf_kv = is_gguf(job) and kv_dtype not in ("f16", "bf16", "f32")  # only a quantized V cache needs it
    return {"attention": "flash"} if gguf_kv and job.attention != "flash" else {}


# What the user asked for.

def request_knobs(job: FitJob, fam: Family | None = None) -> tuple[str, ...]:
    """The size knobs that define what the user gets, kept as asked even at their defaults (training keeps the
    effective batch by construction; YOLO's and Whisper's batches are speed knobs)."""
    fam = fam or family(job)
    if fam == "llm":
        return ("seq",) if job.job == "train" else ("ctx", "batch")
    if fam == "diffusion":
        return ("resolution",) if job.job == "train" else ("resolution", "batch")
    return ("imgsz",) if fam == "yolo" else ()


def gives_up(request: FitJob, plan_job: FitJob, fam: Family | None = None) -> dict[str, tuple[Any, Any]]:
    """The request knobs a plan lowers, as {knob: (asked, planned)}; empty when the plan keeps the request."""
    out: dict[str, tuple[Any, Any]] = {}
    for name in request_knobs(request, fam):
        asked, planned = getattr(request, name), getattr(plan_job, name)
        if asked is not None and planned is not None and planned < asked:
            out[name] = (asked, planned)
    return out


# The search space (solve).

def space(job: FitJob, fixed: Collection[str] = ()) -> dict[str, list[Any]]:
    """The values solve tries for each knob of the job's family; a fixed knob keeps its requested value."""
    fam, train = family(job), job.job == "train"
    knobs: dict[str, list[Any]] = {}
    if fam == "llm" and train and _from_scratch(job):
        pass  # tinylm trains every weight with AdamW, no checkpointing: only the micro-batch moves
    elif fam == "llm" and train:
        knobs["method"] = ["full", "lora", "qlora"]
        knobs["quant"] = ["auto"]  # the method picks the weights: nf4 for qlora, bf16 otherwise
        knobs["optimizer"] = [job.optimizer, *[o for o in ("adamw", "adamw8bit", "paged_adamw8bit")
                                               if o != job.optimizer]]
        knobs["grad_ckpt"] = [True, False]
        knobs["seq"] = _down(job.seq, SEQ_FLOOR)
        knobs["lora_rank"] = _down(job.lora_rank, 4)
        knobs |= _stack_savers(job)
    elif fam == "llm":
        if not job.model.lower().endswith(".gguf") and job.runtime != "autoawq":  # a GGUF file's (and AutoAWQ's
            # checkpoint's) weights are what they are
            knobs["quant"] = _formats(job, ["q8_0", "q6_k", "q5_k_m", "q4_k_m"] if is_gguf(job) else
                                      ["bf16", "int8", "nf4"])
        knobs["ctx"] = _down(job.ctx, 512)
        knobs["batch"] = _down(job.batch, 1, halvings=3)
        knobs["kv_dtype"] = {"llama.cpp": ["f16", "q8_0", "q4_0"], "ollama": ["f16", "q8_0", "q4_0"],
                             "vllm": ["f16", "fp8"]}.get(job.runtime, [job.kv_dtype])
    elif fam == "diffusion" and train:
        knobs["grad_ckpt"] = [True, False]
        knobs["optimizer"] = [job.optimizer, *[o for o in ("adamw", "adamw8bit") if o != optimizer_of(job, fam)]]
        knobs["cached_latents"] = [True, False]
        knobs["attention"] = ["eager", "slicing"] if job.attention == "eager" else [job.attention]
    elif fam == "diffusion":
        knobs["quant"] = ["fp32", "fp16"] if job.quant == "fp32" else [job.quant]  # fp32 only when asked
        knobs["attention"] = ["eager", "slicing"] if job.attention == "eager" else [job.attention]
        knobs["vae_slicing"] = [True, False]
        knobs["vae_tiling"] = [True, False]
        knobs["offload"] = ["none", "model", "sequential"]
        knobs["batch"] = _down(job.batch, 1, halvings=3)
    elif fam == "yolo":
        knobs["batch"] = [1, 2, 4, 8, 16, 32, 64]
        knobs["imgsz"] = sorted({s for s in (job.imgsz, job.imgsz * 3 // 4 // 32 * 32, job.imgsz // 2 // 32 * 32)
                                 if s >= 320} | {job.imgsz})
        knobs["amp"] = sorted({job.amp, True})  # AMP off only when asked: it costs memory and speed
    elif train:  # whisper fine-tune
        knobs["grad_ckpt"] = [True, False]
        knobs["optimizer"] = [job.optimizer, *[o for o in ("adamw", "adamw8bit") if o != optimizer_of(job, fam)]]
    else:
        knobs["quant"] = _formats(job, ["int8"])
        knobs["beam"] = sorted({job.beam, *[b for b in (1, 2, 5) if b <= job.beam]})
        knobs["batch"] = [1, 2, 4, 8, 16] if job.runtime == "faster-whisper" else _down(job.batch, 1, halvings=3)
    return {k: v for k, v in knobs.items() if k not in fixed}


def _stack_savers(job: FitJob) -> dict[str, list[Any]]:
    """The lighter losses and activation offloading, tried only where the job's stack offers them
    (`stacks.offers`: none for the transformers stack, where Liger is an extra install the user asks for)."""
    offered, now = stacks.offers(job), stacks.resolve(job)
    knobs: dict[str, list[Any]] = {}
    order = stacks.LOSSES
    lighter = [loss for loss in order if loss in offered and order.index(loss) > order.index(now.loss)]
    if lighter:
        knobs["loss"] = [job.loss, *lighter]
    if "activation_offload" in offered:
        knobs["activation_offload"] = [job.activation_offload, not now.activation_offload]
    return knobs


def _from_scratch(job: FitJob) -> bool:
    arch = find(job.model)
    return arch is not None and arch.family == "tinylm"


def _down(value: int, floor: int, halvings: int = 2) -> list[int]:
    """The value and up to `halvings` halvings of it, none below `floor` (the value itself is always kept)."""
    out = [value]
    for _ in range(halvings):
        value //= 2
        if value < floor:
            break
        out.append(value)
    return out


def _formats(job: FitJob, options: list[str]) -> list[str]:
    """The requested weight format and the listed ones below it; with "auto", every listed one (its default too)."""
    own = bits(effective_quant(job))
    return [job.quant, *[q for q in options if (bits(q) != own if job.quant == "auto" else bits(q) < own)]]


def _micro_batches(job: FitJob) -> list[tuple[int, int]]:
    """(batch, grad_accum) pairs with the request's effective batch: powers of two up to 16 that divide it."""
    effective = job.batch * job.grad_accum
    sizes = {b for b in (1, 2, 4, 8, 16) if effective % b == 0} | {job.batch}
    return [(b, effective // b) for b in sorted(sizes)]


def candidates(job: FitJob, fam: Family, fixed: Collection[str]) -> Iterator[FitJob]:
    """Every combination of the space's values as a job, less the incoherent ones (QLoRA with 16-bit weights)."""
    knobs = space(job, fixed)
    train = job.job == "train"
    # Training micro-batch moves with gradient accumulation, keeping the effective batch (YOLO has its own batch knob);
    # a --batch given alone is the effective batch, a --grad-accum given too fixes the split.
    pairs = train and fam != "yolo" and "grad_accum" not in fixed
    batches = _micro_batches(job) if pairs else [(job.batch, job.grad_accum)]
    names = list(knobs)
    for values in itertools.product(*knobs.values(), batches):
        update = dict(zip(names, values[:-1], strict=True))
        if pairs:
            update["batch"], update["grad_accum"] = values[-1]
        if "attention" not in fixed:
            update |= flash_for_kv(job, update.get("kv_dtype", job.kv_dtype))
        cand = job.model_copy(update=update)
        if train and fam == "llm" and not _coherent(cand, job, fixed):
            continue
        yield cand


def _coherent(cand: FitJob, job: FitJob, fixed: Collection[str]) -> bool:
    """Method and weight format agree (qlora iff 4-bit); LoRA rank is only varied where there is an adapter."""
    four_bit = effective_quant(cand) in ("nf4", "fp4", "gptq", "awq")
    if "quant" in fixed and (cand.method == "qlora") != four_bit:
        return False
    auto = optimizer_of(cand.model_copy(update={"optimizer": "auto"}), "llm")
    if cand.optimizer == auto:
        return job.optimizer != "auto"  # the request's "auto" stands for it already
    return not (cand.method == "full" and cand.lora_rank != job.lora_rank)


# The memory-lowering steps (ladder).

@dataclass(frozen=True)
class Step:
    """One change that lowers the peak.

    Attributes:
        name: what it changes, e.g. "grad_ckpt".
        cost: quality (then speed) given up, for ordering fixes: 0.5 a little slower, 1 slower or a tiny quality
            loss, 2 a visible quality loss, 3 a real one (half the sequence), per application.
        apply: the changed job, or None when the step does not apply (already on, or at its floor).
        repeat: the ladder applies the step again while it applies (halvings).
    """

    name: str
    cost: float
    apply: Apply
    repeat: bool = False


def steps(job: FitJob) -> list[Step]:
    """The memory-lowering steps for the job's family, in the guide's (ladder) order."""
    fam, train = family(job), job.job == "train"
    if fam == "llm" and train:
        # a lighter loss and activation offloading cost no quality: first, where the job's stack offers them
        # (stacks.offers; the transformers stack offers neither, so its ladder is the guide's)
        return [Step("loss", 0.5, _lighter_loss), Step("activation_offload", 0.5, _activation_offload),
                Step("seq", 3, _halve_seq, repeat=True), Step("4bit", 2, _qlora),
                Step("grad_ckpt", 1, _on("grad_ckpt")), Step("micro_batch", 1, _smaller_micro_batch, repeat=True),
                Step("optimizer", 1, _optim8)]
    if fam == "llm":
        gguf = is_gguf(job)
        return [Step("batch", 1, _halve_batch, repeat=True), Step("kv_dtype", 1, _kv8),
                Step("8bit", 1.5, _weights("q8_0" if gguf else "int8")),
                Step("4bit", 2, _weights("q4_k_m" if gguf else "nf4")), Step("gpu_layers", 2.5, _layers_that_fit),
                Step("ctx", 3, _halve_ctx, repeat=True)]
    if fam == "diffusion" and train:
        return [Step("cached_latents", 0.5, _on("cached_latents")), Step("grad_ckpt", 1, _on("grad_ckpt")),
                Step("optimizer", 1, _optim8), Step("micro_batch", 1, _smaller_micro_batch, repeat=True)]
    if fam == "diffusion":
        return [Step("vae_slicing", 0.5, _on("vae_slicing")), Step("attention", 1, _slice_attention),
                Step("vae_tiling", 1, _on("vae_tiling")), Step("offload_model", 2, _offload("model")),
                Step("batch", 1, _halve_batch, repeat=True), Step("offload_sequential", 4, _offload("sequential"))]
    if fam == "yolo":  # AMP first: it costs nothing in accuracy; then the batch
        return [Step("amp", 0.5, _on("amp")), Step("batch", 1, _halve_batch, repeat=True)]
    if train:  # whisper fine-tune
        return [Step("grad_ckpt", 1, _on("grad_ckpt")), Step("optimizer", 1, _optim8),
                Step("micro_batch", 1, _smaller_micro_batch, repeat=True)]
    return [Step("int8", 1, _weights("int8")), Step("beam", 2, _halve_beam, repeat=True),
            Step("batch", 1, _halve_batch, repeat=True)]


def _changed(job: FitJob, **update: object) -> FitJob | None:
    new = job.model_copy(update=update)
    return None if new == job else new


def _halve_seq(job: FitJob) -> FitJob | None:
    return _changed(job, seq=max(SEQ_FLOOR, job.seq // 2)) if job.seq > SEQ_FLOOR else None


def _layers_that_fit(job: FitJob) -> FitJob | None:
    """llama.cpp with --gpu-layers set: as many layers as fit, the rest on the CPU (partial offload; slower decode)."""
    return _changed(job, gpu_layers=None) if is_gguf(job) and job.gpu_layers is not None else None


def _halve_ctx(job: FitJob) -> FitJob | None:
    return _changed(job, ctx=max(CTX_FLOOR, job.ctx // 2)) if job.ctx > CTX_FLOOR else None


def _smaller_micro_batch(job: FitJob) -> FitJob | None:
    """Halve the micro-batch (to its largest divisor <= half) and raise accumulation: batch * grad_accum is kept."""
    if job.batch == 1:
        return None
    smallest_factor = next((f for f in range(2, math.isqrt(job.batch) + 1) if job.batch % f == 0), job.batch)
    batch = job.batch // smallest_factor
    return _changed(job, batch=batch, grad_accum=job.grad_accum * (job.batch // batch))


def _halve_batch(job: FitJob) -> FitJob | None:
    return _changed(job, batch=job.batch // 2) if job.batch > 1 else None


def _qlora(job: FitJob) -> FitJob | None:
    if job.method == "qlora" and job.quant in (*FOUR_BIT, "auto"):
        return None
    return _changed(job, method="qlora", quant="nf4")


def _optim8(job: FitJob) -> FitJob | None:
    if job.optimizer in ("adamw8bit", "paged_adamw8bit", "adafactor", "sgd"):
        return None
    if job.optimizer == "auto" and job.method == "qlora":
        return None  # auto is paged_adamw8bit for qlora already
    return _changed(job, optimizer="paged_adamw8bit")


def _weights(target: str) -> Apply:
    def apply(job: FitJob) -> FitJob | None:
        if job.model.lower().endswith(".gguf") or bits(target) >= bits(effective_quant(job)):
            return None  # a GGUF file's weights are what they are
        return _changed(job, quant=target)

    return apply


def _kv8(job: FitJob) -> FitJob | None:
    target = {"llama.cpp": "q8_0", "ollama": "q8_0", "vllm": "fp8"}.get(job.runtime)
    if not target or job.kv_dtype not in ("f16", "bf16"):
        return None
    return _changed(job, kv_dtype=target, **flash_for_kv(job, target))


def _on(field: str, value: object = True) -> Apply:
    return lambda job: None if getattr(job, field) == value else _changed(job, **{field: value})


def _slice_attention(job: FitJob) -> FitJob | None:
    # Slicing only saves memory over eager attention: SDPA, flash and xformers never hold the full score matrix
    # ("attention slicing ... cannot really be the memory bottleneck anymore", diffusers maintainers, 2023).
    return _changed(job, attention="slicing") if job.attention == "eager" else None


def _offload(level: Literal["model", "sequential"]) -> Apply:
    order = ("none", "model", "sequential")
    return lambda job: _changed(job, offload=level) if order.index(job.offload) < order.index(level) else None


def _lighter_loss(job: FitJob) -> FitJob | None:
    """The lightest loss the job's stack offers (fused, then chunked), if lighter than the one it runs."""
    order = stacks.LOSSES
    now, offered = stacks.resolve(job).loss, stacks.offers(job)
    best = next((loss for loss in reversed(order) if loss in offered), None)
    return _changed(job, loss=best) if best and order.index(best) > order.index(now) else None


def _activation_offload(job: FitJob) -> FitJob | None:
    if "activation_offload" not in stacks.offers(job) or stacks.resolve(job).activation_offload:
        return None
    return _changed(job, activation_offload=True)


def _halve_beam(job: FitJob) -> FitJob | None:
    return _changed(job, beam=job.beam // 2) if job.beam > 1 else None

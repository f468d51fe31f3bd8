"""Search the knobs that matter for a job's family and rank the settings that fit the card.

Search space: each knob the user did not fix is tried at the requested value and at cheaper ones (half and a
quarter of the context, sequence, batch or LoRA rank; lower-precision weights), and each memory saver is tried on
and off. The search never asks for more than the request, except for pure speed knobs: the micro-batch (at the
same effective batch), YOLO's batch (largest that fits, like Ultralytics' AutoBatch) and faster-whisper's batch.
A training --batch the user gives is the effective batch: the search splits it into micro-batch x accumulation
unless --grad-accum is given too.

Ranking (`RANKING`): first the plans that keep the request, then those that give part of it up, least given up
first (`gives_up`). The request is what the user set and, even at their defaults, the sizes that define what they
get: the training sequence, the inference context and batch, the diffusion resolution and batch, YOLO's image size
(FitJob's defaults, e.g. seq 2048, are what a user who names no sequence asks for). Within each group, fastest
first; plans within 15% of the fastest plan of their speed tier tie, and ties go to quality: higher-precision
weights, full > LoRA > QLoRA, longer context or sequence, larger LoRA rank, larger image and beam, higher-precision
KV cache and optimizer, a larger batch, then more headroom. Where the estimator gives no speed (diffusion, YOLO,
Whisper today), `relative_speed` stands in: the memory savers' rough slow-downs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Any

from onecard.core.errors import ConfigError, OnecardError
from onecard.fit import stacks
from onecard.fit.job import FitJob
from onecard.fit.ladder import SEQ_FLOOR, Family, bits, effective_quant, estimator, family, flash_for_kv, is_gguf

if TYPE_CHECKING:
    from onecard.fit.plan import Plan

__all__ = ["solve", "space", "throughput", "relative_speed", "gives_up", "request_knobs", "RANKING", "TIE"]

TIE = 0.15  # speeds within 15% of their tier's fastest plan count as equal
RANKING = (
    "plans that keep the request (sequence/context, resolution, image size, batch; what you set) first, then those "
    "that give part of it up (marked), least given up first; within each, fastest first (tokens/s, or items/s from "
    "the step time), plans within 15% of their tier's fastest tie, and ties go to higher precision, larger LoRA "
    "rank, no activation offloading, larger batch, then headroom; without a speed estimate, the memory savers' rough "
    "slow-downs stand in"
)
_METHOD_RANK = {"full": 2, "lora": 1, "qlora": 0}
_OPTIM_BITS = {"adamw": 32, "paged_adamw": 32, "adafactor": 16, "sgd": 32}  # 8-bit ones: 8


def _down(value: int, floor: int, steps: int = 2) -> list[int]:
    """The value and up to `steps` halvings of it, none below `floor` (the value itself is always kept)."""
    out = [value]
    for _ in range(steps):
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


def _given_up(request: FitJob, plan_job: FitJob, fam: Family) -> float:
    """How much of the request a plan gives up: halvings summed over the request knobs (0: keeps it)."""
    return sum(math.log2(asked / planned) for asked, planned in gives_up(request, plan_job, fam).values())


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
        if not job.model.lower().endswith(".gguf"):  # a GGUF file's weights are what they are
            knobs["quant"] = _formats(job, ["q8_0", "q6_k", "q5_k_m", "q4_k_m"] if is_gguf(job) else
                                      ["bf16", "int8", "nf4"])
        knobs["ctx"] = _down(job.ctx, 512)
        knobs["batch"] = _down(job.batch, 1, steps=3)
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
        knobs["batch"] = _down(job.batch, 1, steps=3)
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
        knobs["batch"] = [1, 2, 4, 8, 16] if job.runtime == "faster-whisper" else _down(job.batch, 1, steps=3)
    return {k: v for k, v in knobs.items() if k not in fixed}


def _stack_savers(job: FitJob) -> dict[str, list[Any]]:
    """The lighter losses and activation offloading, tried only where the job's stack offers them
    (`stacks.offers`: none for the transformers stack, where Liger is an extra install the user asks for)."""
    offered, now = stacks.offers(job), stacks.resolve(job)
    knobs: dict[str, list[Any]] = {}
    order = ("standard", "chunked", "fused")
    lighter = [loss for loss in order if loss in offered and order.index(loss) > order.index(now.loss)]
    if lighter:
        knobs["loss"] = [job.loss, *lighter]
    if "activation_offload" in offered:
        knobs["activation_offload"] = [job.activation_offload, not now.activation_offload]
    return knobs


def _from_scratch(job: FitJob) -> bool:
    from onecard.fit.catalog import find

    arch = find(job.model)
    return arch is not None and arch.family == "tinylm"


def _candidates(job: FitJob, fam: Family, fixed: Collection[str]) -> Iterator[FitJob]:
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


def optimizer_of(job: FitJob, fam: Family) -> str:
    """The optimizer a job runs with once "auto" is resolved: paged 8-bit AdamW for LLM qlora, else AdamW."""
    if job.optimizer != "auto":
        return job.optimizer
    return "paged_adamw8bit" if fam == "llm" and job.method == "qlora" else "adamw"


def throughput(plan: Plan, fam: Family | None = None) -> float:
    """Items per second of a plan: tokens/s for LLMs, images or segments/s from the step time otherwise; 0 unknown."""
    est, job = plan.estimate, plan.job
    if est.tokens_per_s:
        return est.tokens_per_s
    if not est.step_s:
        return 0.0
    llm_train = job.job == "train" and (fam or family(job)) == "llm"
    return job.batch * (job.seq if llm_train else 1) / est.step_s


def _quality(plan: Plan, fam: Family) -> tuple[float, ...]:
    job = plan.job
    train = job.job == "train"
    adapter = fam == "llm" and train and job.method != "full"
    return (
        (16.0 if job.amp else 32.0) if fam == "yolo" else bits(effective_quant(job)),
        _METHOD_RANK[job.method] if fam == "llm" and train else 0,
        job.seq if train else job.ctx,
        job.lora_rank if adapter else 0,
        job.imgsz,
        job.beam,
        bits(job.kv_dtype),
        _OPTIM_BITS.get(optimizer_of(job, fam), 8),
        not (fam == "llm" and train and stacks.resolve(job).activation_offload),  # no host round trips
        job.batch,
        plan.headroom_gib or 0.0,
    )


def relative_speed(job: FitJob, fam: Family) -> float:
    """A rough relative speed for ranking when the estimator gives none: the product of each saver's slow-down.

    Factors (rough, for ordering only): sequential offload 0.1 (streams every weight over PCIe each step), model
    offload 0.8 (moves each component once per call), attention slicing 0.8, VAE tiling 0.9, gradient
    checkpointing 0.75 (recomputes the forward, about a third of a step), fp32 0.5 (no fp16 tensor cores). Batch,
    image size and beam are left to the quality order (larger first), as Ultralytics' AutoBatch picks the batch.
    """
    speed = {"none": 1.0, "model": 0.8, "sequential": 0.1}[job.offload]
    speed *= (0.8 if job.attention == "slicing" else 1.0) * (0.9 if job.vae_tiling else 1.0)
    speed *= 0.75 if job.grad_ckpt and job.job == "train" else 1.0
    return speed * (0.5 if job.quant == "fp32" or (fam == "yolo" and not job.amp) else 1.0)


def _rank(plans: list[Plan], fam: Family, top: int, request: FitJob) -> list[Plan]:
    speed = {id(p): throughput(p, fam) for p in plans}
    if not any(speed.values()):  # the estimator gives no speed: rank by the rough one
        speed = {id(p): relative_speed(p.job, fam) for p in plans}
    lost = {id(p): round(_given_up(request, p.job, fam), 6) for p in plans}
    # Plans without a speed (llama.cpp partial offload) rank after those with one, in one tier of their own.
    tiers: list[list[Plan]] = []
    for p in sorted(plans, key=lambda p: (lost[id(p)], -speed[id(p)])):
        tier = tiers[-1] if tiers else None
        if tier and lost[id(p)] == lost[id(tier[0])] and speed[id(p)] >= speed[id(tier[0])] * (1 - TIE):
            tier.append(p)
        else:
            tiers.append([p])
    ranked = [p for tier in tiers for p in sorted(tier, key=lambda p: _quality(p, fam), reverse=True)]
    # Drop a plan that another ranked above it beats or equals on speed, every quality and memory: it only adds a
    # saver that saves nothing (VAE tiling at the native size) or gives up something for nothing.
    kept: list[Plan] = []
    for p in ranked:
        q = _quality(p, fam)[:-1]
        if not any(speed[id(k)] >= speed[id(p)] and k.estimate.process_gib <= p.estimate.process_gib
                   and all(a >= b for a, b in zip(_quality(k, fam)[:-1], q, strict=True)) for k in kept):
            kept.append(p)
            if len(kept) == top:
                break
    return kept


def solve(job: FitJob, top: int = 10, fixed: Collection[str] = ()) -> list[Plan]:
    """The settings that fit the card's budget, best first (see `RANKING`).

    Args:
        job: the request; its card and margin set the budget (card memory minus `margin_gib`).
        top: how many plans to return.
        fixed: names of the FitJob fields the user set explicitly; they keep their requested values (a training
            batch given without grad_accum is kept as the effective batch, split into micro-batch x accumulation).

    Raises:
        ConfigError: no card is known (neither --gpu nor --vram, and none detected).
    """
    from onecard.fit import plan as planning

    base = planning.plan(job)
    if base.card is None or base.budget_gib is None:
        raise ConfigError("solving needs a card to fit: none was given or detected", "pass --gpu NAME or --vram GIB")
    budget, fam, predict = base.budget_gib, family(job), estimator(job)
    plans: dict[str, Plan] = {}
    for cand in _candidates(job, fam, set(fixed)):
        key = cand.model_dump_json()
        if key in plans:
            continue
        try:
            est = predict(cand, base.card)
        except OnecardError:  # a combination the estimator does not support is not a solution
            continue
        if est.process_gib <= budget:
            plans[key] = planning.Plan(job=cand, card=base.card, estimate=est, budget_gib=budget, fits=True,
                                       headroom_gib=budget - est.process_gib)
    return _rank(list(plans.values()), fam, top, job)

"""Search the settings that fit the card and rank them: this module walks the space `onecard.fit.knobs` defines.

Search space (`knobs.space`): each knob the user did not fix is tried at the requested value and at cheaper ones
(half and a quarter of the context, sequence, batch or LoRA rank; lower-precision weights), and each memory saver is
tried on and off. The search never asks for more than the request, except for pure speed knobs: the micro-batch (at the
same effective batch), YOLO's batch (largest that fits, like Ultralytics' AutoBatch) and faster-whisper's batch.
A training --batch the user gives is the effective batch: the search splits it into micro-batch x accumulation
unless --grad-accum is given too.

Ranking (`RANKING`): first the request as given, when it fits (a plan that changes a knob, even one the user left at
its default or on "auto", such as `optimizer auto -> adamw`, is an alternative to it, not an answer that replaces it;
a training batch's split into micro-batch x accumulation is the search's, so each split of it counts as given); then
the plans that keep the request, then those that give part of it up, least given up first (`gives_up`). The request
they keep is what the user set and, even at their defaults, the sizes that define what they get: the training
sequence, the inference context and batch, the diffusion resolution and batch, YOLO's image size (FitJob's defaults,
e.g. seq 2048, are what a user who names no sequence asks for). Within each group, fastest first; plans within 15%
of the fastest plan of their speed tier tie, and ties go to quality: higher-precision weights, full > LoRA > QLoRA,
longer context or sequence, larger LoRA rank, larger image and beam, higher-precision KV cache and optimizer, a larger
batch, then more headroom. Where the estimator gives no speed (diffusion, YOLO, Whisper today), `relative_speed`
stands in: the memory savers' rough slow-downs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection

from onecard.core.errors import ConfigError, OnecardError
from onecard.fit import stacks
from onecard.fit.job import FitJob
from onecard.fit.knobs import Family, bits, candidates, effective_quant, family, gives_up, optimizer_of
from onecard.fit.plan import Plan, judge, plan, resolve_arch

__all__ = ["solve", "throughput", "relative_speed", "RANKING", "TIE"]

TIE = 0.15  # speeds within 15% of their tier's fastest plan count as equal
RANKING = (
    "the request as given first when it fits, then the plans that keep the request (sequence/context, resolution, "
    "image size, batch; what you set), then those that give part of it up (marked), least given up first; within "
    "each, fastest first (tokens/s, or items/s from "
    "the step time), plans within 15% of their tier's fastest tie, and ties go to higher precision, larger LoRA "
    "rank, no activation offloading, larger batch, then headroom; without a speed estimate, the memory savers' rough "
    "slow-downs stand in"
)
_METHOD_RANK = {"full": 2, "lora": 1, "qlora": 0}
_OPTIM_BITS = {"adamw": 32, "paged_adamw": 32, "adafactor": 16, "sgd": 32}  # 8-bit ones: 8


def _given_up(request: FitJob, plan_job: FitJob, fam: Family) -> float:
    """How much of the request a plan gives up: halvings summed over the request knobs (0: keeps it)."""
    return sum(math.log2(asked / planned) for asked, planned in gives_up(request, plan_job, fam).values())


def throughput(p: Plan, fam: Family | None = None) -> float:
    """Items per second of a plan: tokens/s for LLMs, images or segments/s from the step time otherwise; 0 unknown."""
    est, job = p.estimate, p.job
    if est.tokens_per_s:
        return est.tokens_per_s
    if not est.step_s:
        return 0.0
    llm_train = job.job == "train" and (fam or family(job)) == "llm"
    return job.batch * (job.seq if llm_train else 1) / est.step_s


def _quality(p: Plan, fam: Family) -> tuple[float, ...]:
    job = p.job
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
        p.headroom_gib or 0.0,
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


def _as_given(request: FitJob, job: FitJob, split: bool) -> bool:
    """Whether `job` is the request unchanged, but for the micro-batch split of its effective batch when `split`."""
    asked, planned = request.model_dump(), job.model_dump()
    if split:
        asked["batch"], planned["batch"] = request.batch * request.grad_accum, job.batch * job.grad_accum
        del asked["grad_accum"], planned["grad_accum"]
    return asked == planned


def _rank(plans: list[Plan], fam: Family, top: int, request: FitJob, first: Callable[[FitJob], bool]) -> list[Plan]:
    speed = {id(p): throughput(p, fam) for p in plans}
    if not any(speed.values()):  # the estimator gives no speed: rank by the rough one; llama.cpp partial offload:
        # each layer on the GPU is one fewer read from host memory per token, so more layers rank first
        speed = {id(p): relative_speed(p.job, fam) * (p.estimate.gpu_layers or 1) for p in plans}
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
    ranked.sort(key=lambda p: not first(p.job))  # stable: the request as given (when asked for first), then the rest
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


def solve(job: FitJob, top: int = 10, fixed: Collection[str] = (), request_first: bool = True) -> list[Plan]:
    """The settings whose upper bound fits the card's budget, best first (see `RANKING`).

    Args:
        job: the request; its card and margin set the budget (card memory minus `margin_gib`).
        top: how many plans to return.
        fixed: names of the FitJob fields the user set explicitly; they keep their requested values (a training
            batch given without grad_accum is kept as the effective batch, split into micro-batch x accumulation).
        request_first: put the request as given first when it fits. False ranks it among the others, for a caller
            whose unfixed knobs are the planner's to choose (`onecard tune`'s "auto" ones: fastest first).

    Raises:
        ConfigError: no card is known (neither --gpu nor --vram, and none detected).
    """
    base = plan(job)
    if base.card is None or base.budget_gib is None:
        raise ConfigError("solving needs a card to fit: none was given or detected", "pass --gpu NAME or --vram GIB")
    budget, fam, resolved = base.budget_gib, family(job), resolve_arch(job.model)
    plans: dict[str, Plan] = {}
    for cand in candidates(job, fam, set(fixed)):
        key = cand.model_dump_json()
        if key in plans:
            continue
        try:
            planned = judge(resolved, cand, base.card, budget)
        except OnecardError:  # a combination the estimator does not support is not a solution
            continue
        if planned.fits:  # decided on the upper bound, as plan() decides
            plans[key] = planned
    split = job.job == "train" and fam != "yolo" and "grad_accum" not in fixed  # as knobs.candidates splits it
    return _rank(list(plans.values()), fam, top, job,
                 lambda cand: request_first and _as_given(job, cand, split))

"""The out-of-memory ladder: successively cheaper jobs, and the cheapest changes that make a job fit.

The steps themselves (per model family, in the guide's order, each with its cost) live in `onecard.fit.knobs`;
this module only walks them, for two callers. Training capabilities walk `oom_ladder` when they hit an
out-of-memory error, in the guide's order (shorter sequences, 4-bit, gradient checkpointing, smaller micro-batch with
more accumulation), after the savers that cost no quality where the job's stack offers them (a lighter loss,
activation offloading; `onecard.fit.stacks`). The planner's answer lists `cheapest_fixes`: the same steps, alone
or two or three together, ordered by how much quality (then speed) they give up.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

from onecard.core.errors import OnecardError
from onecard.fit.job import FitJob
from onecard.fit.knobs import Apply, steps
from onecard.fit.plan import Plan, judge, resolve_arch, resolve_card

__all__ = ["oom_ladder", "oom_ladder_keeping", "cheapest_fixes", "describe_changes"]

# How a changed knob reads in a reason.
_WORDS = {"seq": "sequence", "ctx": "context", "grad_accum": "gradient accumulation", "grad_ckpt":
          "gradient checkpointing", "quant": "weights", "kv_dtype": "KV cache", "vae_slicing": "VAE slicing",
          "vae_tiling": "VAE tiling", "cached_latents": "cached latents", "offload": "CPU offload",
          "amp": "mixed precision (AMP)", "lora_rank": "LoRA rank", "gpu_layers": "GPU layers",
          "activation_offload": "activation offloading", "optimizer_in_backward": "optimizer in backward"}


def describe_changes(before: FitJob, after: FitJob) -> str:
    """The knobs `after` changed from `before`, as text: "sequence 2048 -> 1024, gradient checkpointing on"."""
    out = []
    for name, new in after.model_dump().items():
        old = getattr(before, name)
        if new == old:
            continue
        word = _WORDS.get(name, name.replace("_", " "))
        if name == "gpu_layers":  # None: the planner's, as many as fit
            old, new = (v if v is not None else "as many as fit" for v in (old, new))
        out.append(f"{word} {'on' if new else 'off'}" if isinstance(new, bool) else f"{word} {old} -> {new}")
    return ", ".join(out)


def oom_ladder(job: FitJob) -> Iterator[tuple[FitJob, str]]:
    """Successively cheaper jobs to try after an out-of-memory error, each with the reason for the change.

    Each job builds on the previous one, in the guide's order, and a step is taken only if the planner predicts a
    lower peak for it (VAE tiling at the native size, say, saves nothing). When training, the effective batch
    (batch * grad_accum) never changes. The ladder ends when no step applies.
    """
    try:
        predict = resolve_arch(job.model).estimate
        peak: float | None = predict(job, None).process_gib
    except OnecardError:  # a model the planner cannot size: every step is tried, in order
        peak = None
    for step in steps(job):
        while (new := step.apply(job)) is not None:
            try:
                new_peak = None if peak is None else predict(new, None).process_gib
            except OnecardError:  # a combination the runtime does not offer (vLLM with int8 weights)
                break
            if new_peak is not None and peak is not None and new_peak >= peak:
                break
            yield new, describe_changes(job, new)
            job, peak = new, new_peak
            if not step.repeat:
                break



def oom_ladder_keeping(job: FitJob, keep: Mapping[str, Any]) -> Iterator[tuple[FitJob, str]]:
    """`oom_ladder` for a capability that cannot take some of its steps: each rung with the `keep` knobs held at
    their values (8-bit optimizers without bitsandbytes, CPU offload without a GPU...); rungs that change nothing
    else are skipped, and each reason names what did change."""
    previous = job
    for new, _ in oom_ladder(job):
        new = new.model_copy(update=keep)
        if new != previous:
            yield new, describe_changes(previous, new)
            previous = new


def _fix_candidates(job: FitJob, max_changes: int) -> Iterator[tuple[float, FitJob]]:
    """(cost, job) for every combination of up to `max_changes` distinct steps; a halving may be applied 1-3 times."""
    options: list[list[tuple[float, int, Apply]]] = [
        [(step.cost * k, k, step.apply) for k in range(1, 4 if step.repeat else 2)] for step in steps(job)]
    for n in range(1, max_changes + 1):
        for group in itertools.combinations(options, n):
            for choice in itertools.product(*group):
                cur: FitJob | None = job
                for _, times, apply in choice:
                    for _ in range(times):
                        cur = apply(cur) if cur is not None else None
                if cur is not None:
                    yield sum(c for c, _, _ in choice), cur


def cheapest_fixes(job: FitJob, budget_gib: float | None = None, limit: int = 5,
                   max_changes: int = 3) -> list[tuple[str, Plan]]:
    """The changes (one step, or up to `max_changes` together) that make a job fit on its upper bound, cheapest first.

    Args:
        job: the job as requested.
        budget_gib: the memory the job may use; None: the plan's own (card memory minus the safety margin).
        limit: how many fixes to return.
        max_changes: the most steps combined in one fix.

    Returns:
        (description, plan) pairs, ordered by the quality given up (`Step.cost`), then by predicted memory. A fix
        that changes every knob a cheaper fix changes, and more, is left out. Empty when the job already fits or
        there is no budget (no card).
    """
    resolved = resolve_arch(job.model)
    base = judge(resolved, job, resolve_card(job), budget_gib)
    budget = base.budget_gib
    if budget is None or base.fits:
        return []
    found: dict[str, tuple[float, Plan]] = {}
    misses: set[str] = set()
    for cost, cand in _fix_candidates(job, max_changes):
        key = cand.model_dump_json()
        if key in misses or (key in found and found[key][0] <= cost):
            continue
        try:
            fix = judge(resolved, cand, base.card, budget)
        except OnecardError:  # a combination the runtime does not offer
            misses.add(key)
            continue
        if not fix.fits:  # decided on the upper bound, as plan() decides
            misses.add(key)
            continue
        found[key] = (cost, fix)
    ranked = sorted(found.values(), key=lambda f: (f[0], f[1].estimate.process_gib))
    kept: list[tuple[set[str], Plan]] = []
    for _, fix in ranked:
        knobs = _knobs(job, fix.job)
        if not any(prev <= knobs for prev, _ in kept):
            kept.append((knobs, fix))
    return [(describe_changes(job, fix.job), fix) for _, fix in kept[:limit]]


def _knobs(before: FitJob, after: FitJob) -> set[str]:
    return {k for k, v in after.model_dump().items() if v != getattr(before, k)}

"""The out-of-memory ladder: successively cheaper jobs, and the cheapest changes that make a job fit.

One list of steps per model family serves two callers. Training capabilities walk `oom_ladder` when they hit an
out-of-memory error, in the guide's order (shorter sequences, 4-bit, gradient checkpointing, smaller micro-batch with
more accumulation), after the savers that cost no quality where the job's stack offers them (a lighter loss,
activation offloading; `onecard.fit.stacks`). The planner's answer lists `cheapest_fixes`: the same steps, alone
or two or three together, ordered by how much quality (then speed) they give up.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from onecard.core.errors import OnecardError
from onecard.fit import stacks
from onecard.fit.job import FitJob

if TYPE_CHECKING:
    from onecard.core.gpus import GpuSpec
    from onecard.fit.estimate import Estimate
    from onecard.fit.plan import Plan

__all__ = ["Family", "Step", "family", "estimator", "is_gguf", "steps", "oom_ladder", "cheapest_fixes",
           "describe_changes", "bits", "effective_quant", "flash_for_kv", "SEQ_FLOOR", "CTX_FLOOR"]

Family = Literal["llm", "diffusion", "yolo", "whisper"]
Apply = Callable[[FitJob], "FitJob | None"]

SEQ_FLOOR = 512  # training sequences are not halved below this: shorter examples lose most of their content
CTX_FLOOR = 2048  # inference contexts are not halved below this
FOUR_BIT = ("nf4", "fp4", "gptq", "awq")
_RUNTIME_FAMILY: dict[str, Family] = {
    "diffusers": "diffusion", "ultralytics": "yolo", "openai-whisper": "whisper", "faster-whisper": "whisper"}
# How a changed knob reads in a reason.
_WORDS = {"seq": "sequence", "ctx": "context", "grad_accum": "gradient accumulation", "grad_ckpt":
          "gradient checkpointing", "quant": "weights", "kv_dtype": "KV cache", "vae_slicing": "VAE slicing",
          "vae_tiling": "VAE tiling", "cached_latents": "cached latents", "offload": "CPU offload",
          "amp": "mixed precision (AMP)", "lora_rank": "LoRA rank", "gpu_layers": "GPU layers",
          "activation_offload": "activation offloading", "optimizer_in_backward": "optimizer in backward"}


def family(job: FitJob) -> Family:
    """The model family of a job: from its runtime, else from the estimator the planner picks for its model.

    A model the planner cannot resolve counts as an LLM (the ladder still works for it, step by step).
    """
    if job.runtime in _RUNTIME_FAMILY:
        return _RUNTIME_FAMILY[job.runtime]
    from onecard.fit import plan as planning

    try:
        module, _ = planning.resolve_model(job.model)
    except OnecardError:
        return "llm"
    name = module.__name__.rsplit(".", 1)[-1]
    return name if name in ("diffusion", "yolo", "whisper") else "llm"


def estimator(job: FitJob) -> Callable[[FitJob, GpuSpec | None], Estimate]:
    """`plan.estimate` with the job's model resolved once: for searches that vary only the knobs."""
    from onecard.fit import plan as planning

    module, arch = planning.resolve_model(job.model)
    return lambda j, card: module.estimate(arch, j, card)


def is_gguf(job: FitJob) -> bool:
    """Whether the job runs a GGUF model (llama.cpp or Ollama), whose weight formats are the GGUF types."""
    return job.runtime in ("llama.cpp", "ollama") or job.model.lower().endswith(".gguf")


def describe_changes(before: FitJob, after: FitJob) -> str:
    """The knobs `after` changed from `before`, as text: "sequence 2048 -> 1024, gradient checkpointing on"."""
    out = []
    for name, new in after.model_dump().items():
        old = getattr(before, name)
        if new == old:
            continue
        word = _WORDS.get(name, name.replace("_", " "))
        out.append(f"{word} {'on' if new else 'off'}" if isinstance(new, bool) else f"{word} {old} -> {new}")
    return ", ".join(out)


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


def _changed(job: FitJob, **update: object) -> FitJob | None:
    new = job.model_copy(update=update)
    return None if new == job else new


def _halve_seq(job: FitJob) -> FitJob | None:
    return _changed(job, seq=max(SEQ_FLOOR, job.seq // 2)) if job.seq > SEQ_FLOOR else None


def _halve_ctx(job: FitJob) -> FitJob | None:
    return _changed(job, ctx=max(CTX_FLOOR, job.ctx // 2)) if job.ctx > CTX_FLOOR else None


def _smaller_micro_batch(job: FitJob) -> FitJob | None:
    """Halve the micro-batch (to its largest divisor <= half) and raise accumulation: batch * grad_accum is kept."""
    if job.batch == 1:
        return None
    batch = max(d for d in range(1, job.batch // 2 + 1) if job.batch % d == 0)
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


def flash_for_kv(job: FitJob, kv_dtype: str) -> dict[str, str]:
    """llama.cpp quantizes the V cache only with flash attention on: the attention change a KV dtype needs."""
    gguf_kv = is_gguf(job) and kv_dtype not in ("f16", "bf16")
    return {"attention": "flash"} if gguf_kv and job.attention != "flash" else {}


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
    order = ("standard", "chunked", "fused")
    now, offered = stacks.resolve(job).loss, stacks.offers(job)
    best = next((loss for loss in reversed(order) if loss in offered), None)
    return _changed(job, loss=best) if best and order.index(best) > order.index(now) else None


def _activation_offload(job: FitJob) -> FitJob | None:
    if "activation_offload" not in stacks.offers(job) or stacks.resolve(job).activation_offload:
        return None
    return _changed(job, activation_offload=True)


def _halve_beam(job: FitJob) -> FitJob | None:
    return _changed(job, beam=job.beam // 2) if job.beam > 1 else None


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
                Step("4bit", 2, _weights("q4_k_m" if gguf else "nf4")), Step("ctx", 3, _halve_ctx, repeat=True)]
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


def oom_ladder(job: FitJob) -> Iterator[tuple[FitJob, str]]:
    """Successively cheaper jobs to try after an out-of-memory error, each with the reason for the change.

    Each job builds on the previous one, in the guide's order, and a step is taken only if the planner predicts a
    lower peak for it (VAE tiling at the native size, say, saves nothing). When training, the effective batch
    (batch * grad_accum) never changes. The ladder ends when no step applies.
    """
    try:
        predict = estimator(job)
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
    """The changes (one step, or up to `max_changes` together) that make a job fit, cheapest first.

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
    from onecard.fit import plan as planning

    base = planning.plan(job)
    budget = base.budget_gib if budget_gib is None else budget_gib
    if budget is None or base.estimate.process_gib <= budget:
        return []
    predict = estimator(job)
    found: dict[str, tuple[float, Plan]] = {}
    misses: set[str] = set()
    for cost, cand in _fix_candidates(job, max_changes):
        key = cand.model_dump_json()
        if key in misses or (key in found and found[key][0] <= cost):
            continue
        try:
            est = predict(cand, base.card)
        except OnecardError:  # a combination the runtime does not offer
            misses.add(key)
            continue
        if est.process_gib > budget:
            misses.add(key)
            continue
        found[key] = (cost, planning.Plan(job=cand, card=base.card, estimate=est, budget_gib=budget, fits=True,
                                          headroom_gib=budget - est.process_gib))
    ranked = sorted(found.values(), key=lambda f: (f[0], f[1].estimate.process_gib))
    kept: list[tuple[set[str], Plan]] = []
    for _, fix in ranked:
        knobs = _knobs(job, fix.job)
        if not any(prev <= knobs for prev, _ in kept):
            kept.append((knobs, fix))
    return [(describe_changes(job, fix.job), fix) for _, fix in kept[:limit]]


def _knobs(before: FitJob, after: FitJob) -> set[str]:
    return {k for k, v in after.model_dump().items() if v != getattr(before, k)}

"""The out-of-memory ladder and the cheapest fixes: what a training run steps down to, and what a user is offered."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError

from onecard.fit.job import FitJob
from onecard.fit.knobs import SEQ_FLOOR, steps
from onecard.fit.ladder import cheapest_fixes, describe_changes, oom_ladder

CARD = "4070ti"
LADDER_JOBS = [
    FitJob(model="llama-3.1-8b", job="train", method="full", quant="bf16", seq=4096, batch=8, grad_accum=2,
           grad_ckpt=False, optimizer="adamw", gpu=CARD),
    FitJob(model="mistral-7b", job="train", method="lora", seq=2048, batch=4, grad_ckpt=False, gpu=CARD),
    FitJob(model="llama-3.1-8b", job="infer", quant="bf16", ctx=16384, batch=4, gpu=CARD),
    FitJob(model="sdxl", job="infer", batch=4, gpu=CARD),
    FitJob(model="yolov8s", job="train", batch=64, amp=False, gpu=CARD),
    FitJob(model="whisper-large-v3", job="infer", runtime="faster-whisper", beam=5, batch=8, gpu=CARD),
]


def test_llm_training_ladder_follows_the_guide_order() -> None:
    job = LADDER_JOBS[0]
    reasons = [reason for _, reason in oom_ladder(job)]
    first = {word: next(i for i, r in enumerate(reasons) if word in r)
             for word in ("sequence", "qlora", "gradient checkpointing", "gradient accumulation")}
    assert first["sequence"] < first["qlora"] < first["gradient checkpointing"] < first["gradient accumulation"]


@pytest.mark.parametrize("job", [j for j in LADDER_JOBS if j.job == "train"], ids=lambda j: j.model)
def test_ladder_keeps_the_effective_batch(job: FitJob) -> None:
    rungs = list(oom_ladder(job))
    assert rungs, "a job with room to step down yields at least one rung"
    for rung, _ in rungs:
        assert rung.batch * rung.grad_accum == job.batch * job.grad_accum or rung.model.startswith("yolo")


def test_ladder_stops_at_the_sequence_floor_and_ends() -> None:
    rungs = [rung for rung, _ in oom_ladder(LADDER_JOBS[0])]
    assert min(r.seq for r in rungs) == SEQ_FLOOR
    last = rungs[-1]
    assert (last.method, last.grad_ckpt, last.batch) == ("qlora", True, 1)
    assert list(oom_ladder(last)) == [], "nothing left to step down"


@pytest.mark.parametrize("job", LADDER_JOBS, ids=lambda j: f"{j.model}-{j.job}")
def test_each_rung_lowers_the_predicted_peak(job: FitJob) -> None:
    from onecard.fit.plan import estimate

    peak = estimate(job).peak_allocated_gib
    for rung, reason in oom_ladder(job):
        new = estimate(rung).peak_allocated_gib
        assert new < peak, f"{reason}: {new:.3f} GiB is not below {peak:.3f}"
        peak = new


def test_describe_changes_reads_like_the_flags() -> None:
    before = FitJob(model="m", job="train", seq=2048, grad_ckpt=False)
    after = before.model_copy(update={"seq": 1024, "grad_ckpt": True})
    assert describe_changes(before, after) == "sequence 2048 -> 1024, gradient checkpointing on"


def test_steps_do_not_apply_twice() -> None:
    job = FitJob(model="llama-3.1-8b", job="train", method="qlora", grad_ckpt=True, seq=SEQ_FLOOR, batch=1)
    assert all(step.apply(job) is None for step in steps(job) if step.name in ("seq", "4bit", "grad_ckpt"))


def test_cheapest_fixes_fit_and_come_cheapest_first(set_margins: Callable[[float], None]) -> None:
    from onecard.fit.plan import plan

    set_margins(0.1)
    # a 16 GB card: on 12 GB the 4-bit fixes no longer fit since the standard loss's reserved segments are counted
    # (llm_train.loss_segments_bytes: 0.5 GiB more at 4 x 512 tokens of Llama 3's 128k vocabulary)
    job = FitJob(model="llama-3.1-8b", job="train", method="lora", seq=4096, batch=4, grad_ckpt=False,
                 gpu="4060ti-16gb")
    assert not plan(job).fits
    fixes = cheapest_fixes(job)
    assert fixes, "a LoRA job on an 8B model has 4-bit and shorter-sequence fixes on a 16 GB card"
    changed = []
    for text, fix in fixes:
        assert fix.fits and fix.estimate.process_gib <= fix.budget_gib
        assert fix.peak_upper_gib is not None and fix.peak_upper_gib <= fix.budget_gib  # decided on the bound
        assert text == describe_changes(job, fix.job)
        assert fix.job.batch * fix.job.grad_accum == job.batch * job.grad_accum
        knobs = {k for k, v in fix.job.model_dump().items() if v != getattr(job, k)}
        assert not any(prev <= knobs for prev in changed), f"{text} only adds to a cheaper fix"
        changed.append(knobs)


def test_no_fixes_for_a_job_that_fits() -> None:
    job = FitJob(model="llama-3.1-8b", job="infer", quant="nf4", ctx=2048, gpu="rtx-4090")
    assert cheapest_fixes(job) == []


def test_a_tighter_budget_asks_for_more() -> None:
    job = FitJob(model="llama-3.1-8b", job="train", method="qlora", seq=2048, batch=2, grad_ckpt=False, gpu=CARD)
    for _, fix in cheapest_fixes(job, budget_gib=6.0):
        assert fix.estimate.process_gib <= 6.0 and fix.peak_upper_gib is not None and fix.peak_upper_gib <= 6.0


def test_a_wild_micro_batch_steps_down_at_once_and_an_absurd_one_is_refused() -> None:
    # A prime micro-batch near the bound: the step down used to search every divisor (minutes for a web form's
    # batch of 10**12; found by the web API's fuzz). Now the largest divisor is found from the smallest factor.
    from onecard.fit.knobs import _smaller_micro_batch

    job = FitJob(model="llama-3.1-8b", job="train", batch=1_048_573, grad_accum=3)  # prime
    smaller = _smaller_micro_batch(job)
    assert smaller is not None and (smaller.batch, smaller.grad_accum) == (1, 3 * 1_048_573)
    assert _smaller_micro_batch(job.model_copy(update={"batch": 96})).batch == 48  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="batch"):
        FitJob(model="llama-3.1-8b", job="train", batch=10**12)

"""The answer a user reads: JSON with the promised keys and sums, and text that names the card, verdict and parts."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from rich.console import Console

from onecard.core.gpus import lookup
from onecard.fit.estimate import Estimate
from onecard.fit.job import FitJob
from onecard.fit.report import LABELS, render, render_solutions, to_json, verdict

CARD = lookup("4070ti")


@pytest.fixture(autouse=True)
def _margins(set_margins: Callable[[float], None]) -> None:
    """Real plans here are bounded at 10 % above their estimate, whatever bounds.json says today."""
    set_margins(0.1)
REQUIRED = {"peak_allocated_gib", "peak_reserved_gib", "process_gib", "breakdown", "fits", "budget_gib",
            "headroom_gib", "assumptions", "model", "job", "card", "gpu_layers", "cpu_gib", "throughput"}


def _plan(parts: dict[str, float], **job: object) -> object:
    """A plan on a 12 GiB RTX 4070 Ti (budget 11.2 GiB: 11.70 usable less the 0.5 margin) with a hand-made estimate."""
    from onecard.fit.plan import Plan

    est = Estimate(parts=parts, slack_gib=0.4, context_gib=0.5, assumptions=["micro-batch 1", "bf16 LoRA adapters"],
                   step_s=1.7, throughput_note="40% of the card's bf16 TFLOPS")
    fit_job = FitJob(model="llama-3.1-8b", job="train", gpu="4070ti", **job)  # type: ignore[arg-type]
    budget = CARD.usable_gib - fit_job.margin_gib
    return Plan(job=fit_job, card=CARD, estimate=est, budget_gib=budget, fits=est.process_gib <= budget,
                headroom_gib=budget - est.process_gib)


FITS = {"weights": 5.3, "activations": 1.1, "logits": 1.0, "gradients": 0.1, "optimizer": 0.2, "adapters": 0.1}
TOO_BIG = FITS | {"activations": 7.0}


def _text(render_fn: object, *args: object, **kwargs: object) -> str:
    console = Console(record=True, width=120)
    render_fn(*args, console, **kwargs)  # type: ignore[operator]
    return console.export_text()


def test_json_has_the_promised_keys_and_is_serialisable() -> None:
    out = to_json(_plan(FITS))
    assert set(out) >= REQUIRED
    assert json.loads(json.dumps(out)) == out
    assert out["card"]["name"] == CARD.name and out["model"] == "llama-3.1-8b" and out["job"]["job"] == "train"


def test_breakdown_sums_to_reserved_and_process() -> None:
    out = to_json(_plan(FITS))
    parts = out["breakdown"]
    assert {"allocator_slack", "cuda_context", "weights", "kv_cache"} <= set(parts)
    assert sum(parts.values()) == pytest.approx(out["process_gib"], abs=5e-3)
    assert sum(parts.values()) - parts["cuda_context"] == pytest.approx(out["peak_reserved_gib"], abs=5e-3)
    assert out["peak_allocated_gib"] == pytest.approx(sum(FITS.values()), abs=1e-3)
    assert out["headroom_gib"] == pytest.approx(out["budget_gib"] - out["process_gib"], abs=1e-3)


def test_verdicts_read_as_promised() -> None:
    assert verdict(_plan(FITS)) == "fits a 12 GiB RTX 4070 Ti with 2.5 GiB to spare"
    assert verdict(_plan(TOO_BIG)) == "does not fit: needs 14.6 GiB of 11.2"


def test_a_verdict_shows_the_digits_that_tell_its_figures_apart() -> None:
    """0.01 GiB over the 11.2 GiB budget is said as such, not as "needs 11.2 GiB of 11.2"."""
    assert verdict(_plan({"weights": 10.31})) == "does not fit: needs 11.21 GiB of 11.20"
    assert verdict(_plan({"weights": 10.2})) == "fits a 12 GiB RTX 4070 Ti with 0.1 GiB to spare"


def test_rendered_text_names_card_verdict_parts_and_assumptions() -> None:
    text = _text(render, _plan(FITS))
    assert "fits a 12 GiB RTX 4070 Ti with 2.5 GiB to spare" in text
    assert "budget 11.2 GiB" in text
    for part in (*FITS, "allocator_slack", "cuda_context"):
        assert LABELS[part] in text, part
    assert "micro-batch 1" in text and "1.70 s/step" in text


def test_a_plan_that_does_not_fit_shows_its_fixes() -> None:
    from onecard.fit.ladder import cheapest_fixes

    # micro-batch 1: at 4 x 512 tokens the standard loss's reserved segments (llm_train.loss_segments_bytes) leave
    # no 4-bit fix within 12 GiB
    plan = _plan(TOO_BIG, method="lora", seq=4096, batch=1, grad_ckpt=False)
    fixes = cheapest_fixes(plan.job)  # the real planner's fixes for the same request
    text = _text(render, plan, fixes=fixes)
    assert "does not fit: needs 14.6 GiB of 11.2" in text
    assert "cheapest changes that make it fit" in text
    assert all(change.split(",")[0] in text for change, _ in fixes)
    out = to_json(plan, fixes=fixes)
    assert [f["changes"] for f in out["fixes"]] == [change for change, _ in fixes]


def test_solutions_table_ranks_plans_with_their_changes() -> None:
    from onecard.fit.plan import plan as real_plan
    from onecard.fit.solve import solve

    request = FitJob(model="llama-3.1-8b", job="train", method="qlora", seq=2048, stack="onecard", gpu="4070ti")
    plans = solve(request, top=5, fixed={"method"})
    text = _text(render_solutions, plans, request=request)
    assert "settings that fit 12 GiB RTX 4070 Ti" in text and "ranking: the request as given first" in text
    assert "plans that keep the request" in text
    assert all(f"{p.estimate.process_gib:.1f}" in text for p in plans)
    out = to_json(real_plan(request), solutions=plans)
    assert len(out["solutions"]) == len(plans) and all(s["fits"] for s in out["solutions"])
    assert out["solutions"][0]["keeps_request"] and out["solutions"][0]["gives_up"] == {}


def test_solutions_that_change_the_request_are_marked() -> None:
    from onecard.fit.plan import plan as real_plan
    from onecard.fit.solve import solve

    request = FitJob(model="llama-3.1-8b", job="train", method="qlora", batch=4, stack="onecard", gpu="4070ti")
    plans = solve(request, top=20, fixed={"method"})
    text = _text(render_solutions, plans, request=request)
    assert "kept" in text and "changed" in text and "sequence 2048 -> 1024" in text
    out = to_json(real_plan(request), solutions=plans)
    changed = [s for s in out["solutions"] if not s["keeps_request"]]
    assert changed and changed[0]["gives_up"] == {"seq": {"asked": 2048, "planned": 1024}}


def test_no_solutions_says_so() -> None:
    assert "no setting" in _text(render_solutions, [])


def test_without_a_card_it_gives_the_peak_and_asks_for_one() -> None:
    from onecard.fit.plan import Plan

    plan = _plan(FITS)
    bare = Plan(job=plan.job, card=None, estimate=plan.estimate, budget_gib=None, fits=None, headroom_gib=None)
    text = _text(render, bare)
    assert "needs 8.7 GiB" in text and "--gpu" in text
    out = to_json(bare)
    assert out["card"] is None and out["fits"] is None and out["process_gib"] == pytest.approx(8.7)


def test_a_real_plan_says_it_decides_on_the_upper_bound() -> None:
    from onecard.fit.plan import plan as real_plan

    p = real_plan(FitJob(model="llama-3.1-8b", job="train", method="qlora", seq=2048, stack="onecard", gpu="4070ti"))
    assert p.peak_upper_gib == pytest.approx(1.1 * p.estimate.process_gib) and p.fits
    text = _text(render, p)
    assert (f"fits a 12 GiB RTX 4070 Ti with margin: upper bound {p.peak_upper_gib:.1f} of 11.2 GiB, "
            f"{11.2 - p.peak_upper_gib:.1f} to spare") in text
    assert "= estimate x 1.100" in text and "llm-train" in text and "fits is decided on it" in text
    out = to_json(p)
    assert out["decided_on"] == "peak_upper_gib" and out["kind"] == "llm-train" and out["bound_margin"] == 0.1
    assert out["peak_upper_gib"] == pytest.approx(1.1 * out["process_gib"], abs=2e-3)
    assert out["headroom_gib"] == pytest.approx(out["budget_gib"] - out["peak_upper_gib"], abs=2e-3)
    assert out["calibration"] is None and out["bound_cases"] > 0


def test_an_estimate_inside_the_budget_whose_bound_is_not_may_not_fit(set_margins: Callable[[float], None]) -> None:
    from onecard.fit.plan import plan as real_plan

    job = FitJob(model="llama-3.1-8b", job="train", method="qlora", seq=2048, gpu="4070ti")
    set_margins(0.0)
    point = real_plan(job).estimate.process_gib
    set_margins(11.2 / point - 1 + 0.02)  # the bound lands 0.02 x the estimate over the 11.2 GiB budget
    p = real_plan(job)
    assert p.estimate.process_gib == pytest.approx(point) and p.fits is False
    assert verdict(p) == (f"may not fit: the estimate {point:.1f} GiB is within the 11.2 budget, its upper bound "
                          f"{p.peak_upper_gib:.1f} is not")
    assert to_json(p)["fits"] is False

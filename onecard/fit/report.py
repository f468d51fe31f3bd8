"""The planner's answer, as JSON (`--json`) and as readable rich output: verdict, breakdown bar, assumptions, fixes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from onecard.fit import bound
from onecard.fit.catalog import find
from onecard.fit.estimate import PARTS
from onecard.fit.job import FitJob
from onecard.fit.knobs import family, gives_up
from onecard.fit.ladder import describe_changes
from onecard.fit.solve import RANKING

if TYPE_CHECKING:
    from onecard.fit.calibrate import Calibration
    from onecard.fit.estimate import Estimate
    from onecard.fit.measure import Measured
    from onecard.fit.plan import Plan

__all__ = [
    "to_json", "render", "render_solutions", "render_trace", "render_measured", "render_calibration", "breakdown",
    "verdict", "bound_note", "strict_note", "LABELS",
]

BAR_WIDTH = 60
# Every part of the process's memory, in drawing order: the tensor parts, then what the allocator and CUDA add.
LABELS = {
    "weights": "weights", "kv_cache": "KV cache", "activations": "activations", "logits": "logits",
    "gradients": "gradients", "optimizer": "optimizer states", "adapters": "adapters", "runtime": "runtime buffers",
    "allocator_slack": "allocator slack", "cuda_context": "CUDA context",
}
COLOURS = {
    "weights": "blue", "kv_cache": "magenta", "activations": "yellow", "logits": "bright_yellow", "gradients": "red",
    "optimizer": "dark_orange", "adapters": "green", "runtime": "cyan", "allocator_slack": "grey62",
    "cuda_context": "grey42",
}


def breakdown(plan: Plan) -> dict[str, float]:
    """GiB per part, every part named (zeros included); sums to the process figure (what nvidia-smi shows)."""
    est = plan.estimate
    parts = {part: est.parts.get(part, 0.0) for part in PARTS}
    return parts | {"allocator_slack": est.slack_gib, "cuda_context": est.context_gib}


def _n(gib: float) -> str:
    """A size without a useless ".0": 11.99 -> "12", 7.63 -> "7.6"."""
    return f"{gib:.1f}".removesuffix(".0")


def _card_text(plan: Plan) -> str:
    card = plan.card
    if card is None:
        return "card"
    return f"{_n(card.vram_gib)} GiB {card.name.removeprefix('NVIDIA ').removeprefix('GeForce ')}"


def _apart(a: float, b: float) -> tuple[str, str]:
    """Two GiB figures to one decimal, or to as many more (up to three) as it takes to show which is larger: a
    bound of 11.21 against a budget of 11.20 reads "11.21 ... 11.20", not "11.2 is not within 11.2"."""
    for digits in (1, 2, 3):
        x, y = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if x != y or a == b:
            break
    return x, y


def verdict(plan: Plan) -> str:
    """One line, decided on the upper bound where the plan has one: "fits a 12 GiB RTX 4070 Ti with margin: upper
    bound 9.1 of 11.2 GiB, 2.1 to spare", "may not fit: ...", or "does not fit: needs 15.2 GiB of 11.2"."""
    need, upper = plan.estimate.process_gib, plan.peak_upper_gib
    if plan.card is None or plan.budget_gib is None:
        bound = "" if upper is None else f", upper bound {upper:.1f}"
        return f"needs {need:.1f} GiB{bound} (no card given: pass --gpu or --vram to check the fit)"
    budget = plan.budget_gib
    if plan.fits and upper is None:  # a plan made without a bound
        return f"fits a {_card_text(plan)} with {plan.headroom_gib:.1f} GiB to spare"
    if upper is not None and (plan.fits or need <= budget):
        bounded, of = _apart(upper, budget)
        if plan.fits:
            return (f"fits a {_card_text(plan)} with margin: upper bound {bounded} of {of} GiB, "
                    f"{plan.headroom_gib:.1f} to spare")
        return (f"may not fit: the estimate {need:.1f} GiB is within the {of} budget, its upper bound {bounded} is "
                "not")
    needed, of = _apart(need, budget)
    return f"does not fit: needs {needed} GiB of {of}"


def bound_note(plan: Plan) -> str | None:
    """Where the upper bound comes from: "upper bound 9.6 GiB = estimate x 1.050 + 1.58 GiB: covers 95% of its
    group's 6 scored cases from 2 sources, lowest at 11.2 GiB (llm-train on transformers); fits is decided on it"."""
    if plan.peak_upper_gib is None or plan.margin is None:
        return None
    m = plan.margin
    strict = m.group == bound.FIRST_SIGHT
    on = f" on {m.group.split('/', 1)[1]}" if "/" in m.group else ""
    behind = f"{m.rule} ({m.kind}{', --strict' if strict else on})"
    plus = f" + {m.abs_gib:.2f} GiB" if m.abs_gib else ""
    return (f"upper bound {plan.peak_upper_gib:.1f} GiB = estimate x {1 + m.margin:.3f}{plus}: {behind}; "
            "fits is decided on it")


def strict_note(plan: Plan) -> str | None:
    """The first-sight bound beside the default one: "for a harness unlike the stacks fit models, --strict decides
    on 12.5 GiB instead (over the 11.2 budget)"; None when the plan is decided on it already, or has no bound."""
    first = first_sight_upper(plan)
    if first is None or plan.margin is None or plan.margin.group == bound.FIRST_SIGHT:
        return None
    note = "for a harness unlike the stacks fit models, --strict decides on {} GiB instead"
    if plan.budget_gib is None:
        return note.format(f"{first:.1f}")
    upper, budget = _apart(first, plan.budget_gib)
    return note.format(upper) + f" ({'within' if first <= plan.budget_gib else 'over'} the {budget} budget)"


def first_sight_upper(plan: Plan) -> float | None:
    """The first-sight bound on the plan's estimate (what `--strict` decides on); None for vLLM, whose peak is the
    share it reserves, and for a plan without a bound."""
    if plan.margin is None or plan.margin is bound.RESERVED or plan.peak_upper_gib is None:
        return None
    return bound.strict(plan.margin).upper(plan.estimate.process_gib)


def _throughput(plan: Plan) -> dict[str, Any]:
    est = plan.estimate
    return {"step_s": est.step_s, "tokens_per_s": est.tokens_per_s, "note": est.throughput_note}


def _summary(plan: Plan, request: FitJob) -> dict[str, Any]:
    """The short form of a plan in a list of fixes or solutions."""
    return {
        "changes": describe_changes(request, plan.job),
        "settings": {k: v for k, v in plan.job.model_dump(mode="json").items() if v != getattr(request, k)},
        "peak_allocated_gib": round(plan.estimate.peak_allocated_gib, 3),
        "peak_reserved_gib": round(plan.estimate.peak_reserved_gib, 3),
        "process_gib": round(plan.estimate.process_gib, 3),
        "peak_upper_gib": None if plan.peak_upper_gib is None else round(plan.peak_upper_gib, 3),
        "headroom_gib": round(plan.headroom_gib, 3) if plan.headroom_gib is not None else None,
        "fits": plan.fits,
        "throughput": _throughput(plan),
    }


def _request_kept(request: FitJob, plan: Plan, fam: Any = None) -> dict[str, Any]:
    lost = gives_up(request, plan.job, fam)
    return {"keeps_request": not lost, "gives_up": {k: {"asked": a, "planned": p} for k, (a, p) in lost.items()}}


def to_json(plan: Plan, fixes: Sequence[tuple[str, Plan]] | None = None,
            solutions: Sequence[Plan] | None = None) -> dict[str, Any]:
    """The plan as JSON-able data (GiB rounded to 3 decimals): what `onecard fit --json` prints.

    Args:
        plan: the plan of the request.
        fixes: `ladder.cheapest_fixes` output, listed under "fixes".
        solutions: `solve.solve` output, listed under "solutions".
    """
    est, card = plan.estimate, plan.card
    out: dict[str, Any] = {
        "model": plan.job.model,
        "job": plan.job.model_dump(mode="json"),
        "card": None if card is None else {
            "key": card.key, "name": card.name, "vram_gib": card.vram_gib, "usable_gib": card.usable_gib,
            "bandwidth_gbs": card.bandwidth_gbs, "fp16_tflops": card.fp16_tflops, "bf16_tflops": card.bf16_tflops,
            "bf16": card.bf16},
        "fits": plan.fits,
        "verdict": verdict(plan),
        "strict_note": strict_note(plan),
        "decided_on": "peak_upper_gib" if plan.peak_upper_gib is not None else "process_gib",
        "peak_allocated_gib": round(est.peak_allocated_gib, 3),
        "peak_reserved_gib": round(est.peak_reserved_gib, 3),
        "process_gib": round(est.process_gib, 3),
        "cache_gib": round(est.cache_gib, 3),
        "peak_upper_gib": None if plan.peak_upper_gib is None else round(plan.peak_upper_gib, 3),
        "kind": None if plan.margin is None else plan.margin.kind,
        "bound_margin": None if plan.margin is None else plan.margin.margin,
        "bound_abs_gib": None if plan.margin is None else plan.margin.abs_gib,
        "bound_cases": None if plan.margin is None else plan.margin.cases,
        "bound_group": None if plan.margin is None or not plan.margin.group else plan.margin.group,
        "peak_upper_first_sight_gib": None if (strict := first_sight_upper(plan)) is None else round(strict, 3),
        "calibration": None if plan.calibration is None else {
            "scale": plan.calibration.scale, "observations": plan.calibration.observations},
        "budget_gib": None if plan.budget_gib is None else round(plan.budget_gib, 3),
        "headroom_gib": None if plan.headroom_gib is None else round(plan.headroom_gib, 3),
        "breakdown": {k: round(v, 3) for k, v in breakdown(plan).items()},
        "assumptions": list(est.assumptions),
        "gpu_layers": est.gpu_layers,
        "cpu_gib": round(est.cpu_gib, 3),
        "throughput": _throughput(plan),
    }
    if fixes is not None:
        out["fixes"] = [_summary(fix, plan.job) for _, fix in fixes]
    if solutions is not None:
        fam = family(plan.job)
        out["solutions"] = [_summary(p, plan.job) | _request_kept(plan.job, p, fam) for p in solutions]
        out["ranking"] = RANKING
    return out


def _bar(plan: Plan) -> Group:
    """The breakdown as one stacked bar against the budget, and a marker under the budget's position."""
    parts = {k: v for k, v in breakdown(plan).items() if v > 0}
    total = sum(parts.values())
    scale = max(total, plan.budget_gib or 0.0) or 1.0
    bar, cum, end = Text(), 0.0, 0
    for part, gib in parts.items():
        cum += gib
        start, end = end, round(cum / scale * BAR_WIDTH)
        bar.append("█" * (end - start), style=COLOURS[part])
    if plan.budget_gib is None:
        return Group(bar)
    pos = min(BAR_WIDTH - 1, round(plan.budget_gib / scale * BAR_WIDTH))
    bar.append("░" * (pos - end), style="grey23")
    marker = Text(" " * pos + f"▲ budget {plan.budget_gib:.1f} GiB", style="bold" if plan.fits else "bold red")
    return Group(bar, marker)


def _legend(plan: Plan) -> Table:
    legend = Table.grid(padding=(0, 1))
    for part, gib in breakdown(plan).items():
        if gib > 0:
            legend.add_row(Text("██", style=COLOURS[part]), LABELS[part], f"{gib:6.2f} GiB")
    return legend


def _speed(plan: Plan) -> str:
    est, job = plan.estimate, plan.job
    if est.tokens_per_s:
        return f"{est.tokens_per_s:,.0f} tok/s"
    if not est.step_s:
        return "-"
    if job.job == "train" and family(job) == "llm":  # steps of different batch x seq compare by tokens/s
        return f"{est.step_s:.2f} s/step, {job.batch * job.seq / est.step_s:,.0f} tok/s"
    return f"{est.step_s:.2f} s/step"


def _method(job: FitJob) -> str:
    arch = find(job.model)
    return "from scratch" if arch is not None and arch.family == "tinylm" else job.method


def render(plan: Plan, console: Console, fixes: Sequence[tuple[str, Plan]] | None = None) -> None:
    """Print the plan: peak and verdict, the breakdown bar and legend, assumptions, and fixes when it does not fit."""
    est, job = plan.estimate, plan.job
    what = f"{job.job} ({_method(job)})" if job.job == "train" and family(job) == "llm" else job.job
    console.print(Text(f"{job.model} · {what}", style="bold"))
    console.print(f"peak {est.process_gib:.1f} GiB on the card: {est.peak_allocated_gib:.2f} allocated by tensors, "
                  f"{est.peak_reserved_gib:.2f} reserved by the allocator, + {est.context_gib:.2f} CUDA context")
    console.print(Text(verdict(plan), style="bold green" if plan.fits else "bold red"))
    for note in (bound_note(plan), strict_note(plan)):
        if note is not None:
            console.print(note, highlight=False)
    if (held := est.held_gib(None if plan.card is None else plan.card.usable_gib)) >= 0.05:
        console.print(f"nvidia-smi may show up to {est.process_gib + held:.1f} GiB: PyTorch's cache keeps {held:.1f} "
                      "GiB of freed segments besides where the card has room, and gives them back when memory runs "
                      "short (not part of what has to fit)", highlight=False)
    if est.cpu_gib >= 0.05:  # paged optimizer states or offloaded layers; less rounds to 0.0
        console.print(f"+ {est.cpu_gib:.1f} GiB held in CPU RAM (offloaded)")
    if est.gpu_layers is not None:
        console.print(f"llama.cpp: {est.gpu_layers} layers on the GPU")
    if est.tokens_per_s or est.step_s:
        console.print(f"≈ {_speed(plan)}" + (f"  ({est.throughput_note})" if est.throughput_note else ""))
    console.print()
    console.print(_bar(plan))
    console.print(_legend(plan))
    if est.assumptions:
        console.print(Text("\nassumptions", style="bold"))
        for line in est.assumptions:
            console.print(f"  • {line}", highlight=False)
    if fixes and not plan.fits:
        table = Table(title="cheapest changes that make it fit", title_justify="left")
        table.add_column("change")
        table.add_column("peak GiB", justify="right")
        table.add_column("upper GiB", justify="right")
        table.add_column("spare GiB", justify="right")
        for text, fix in fixes:
            table.add_row(text, f"{fix.estimate.process_gib:.1f}", _upper(fix), f"{fix.headroom_gib:.1f}")
        console.print(table)
    elif fixes is not None and plan.fits is False:
        console.print("no change of up to three knobs makes it fit: `--solve` searches all of them together; "
                      "otherwise a smaller model or a larger card")


def render_solutions(plans: Sequence[Plan], console: Console, request: FitJob | None = None) -> None:
    """Print the solved plans as a ranked table: what differs from the request, peak, headroom, speed.

    Args:
        plans: `solve.solve` output, best first.
        console: where to print.
        request: the job as asked; the settings column shows what each plan changes. None: the first plan.
    """
    if not plans:
        console.print(Text("no setting the planner searched fits this card", style="bold red"))
        return
    ref = request or plans[0].job
    fam = family(ref)
    note = next((p.estimate.throughput_note for p in plans if p.estimate.throughput_note), None)
    decided = " on the upper bound" if plans[0].peak_upper_gib is not None else ""
    table = Table(title=f"settings that fit {_card_text(plans[0])}{decided} (budget {plans[0].budget_gib:.1f} GiB)",
                  title_justify="left", caption=f"ranking: {RANKING}" + (f"\nspeed: {note}" if note else ""),
                  caption_justify="left")
    table.add_column("#", justify="right")
    table.add_column("request")
    table.add_column("settings")
    table.add_column("peak GiB", justify="right")
    table.add_column("upper GiB", justify="right")
    table.add_column("spare GiB", justify="right")
    table.add_column("speed", justify="right")
    kept = [not gives_up(ref, p.job, fam) for p in plans]
    for i, p in enumerate(plans):
        request_cell = Text("kept", style="green") if kept[i] else Text("changed", style="bold yellow")
        table.add_row(str(i + 1), request_cell, describe_changes(ref, p.job) or "as requested",
                      f"{p.estimate.process_gib:.1f}", _upper(p), f"{p.headroom_gib:.1f}", _speed(p),
                      end_section=kept[i] and i + 1 < len(plans) and not kept[i + 1])
    console.print(table)


def _upper(plan: Plan) -> str:
    return "-" if plan.peak_upper_gib is None else f"{plan.peak_upper_gib:.1f}"


def _error(pred: float, ref: float | None) -> str:
    return "-" if not ref else f"{100 * (pred - ref) / ref:+.1f}%"


def render_trace(analytic: Estimate, traced: Estimate, console: Console) -> None:
    """Print the analytic estimate beside the fake-tensor trace, part by part (GiB), and the trace's assumptions."""
    table = Table(title="analytic model vs fake-tensor trace (no GPU)", title_justify="left")
    table.add_column("part")
    table.add_column("analytic GiB", justify="right")
    table.add_column("traced GiB", justify="right")
    for part in [p for p in PARTS if analytic.parts.get(p) or traced.parts.get(p)]:
        a, t = analytic.parts.get(part, 0.0), traced.parts.get(part, 0.0)
        table.add_row(LABELS.get(part, part), f"{a:.2f}", f"{t:.2f}")
    table.add_row(Text("peak allocated", style="bold"), f"{analytic.peak_allocated_gib:.2f}",
                  f"{traced.peak_allocated_gib:.2f}")
    table.add_row(Text("peak reserved", style="bold"), f"{analytic.peak_reserved_gib:.2f}",
                  f"{traced.peak_reserved_gib:.2f}")
    console.print(table)
    for line in traced.assumptions:
        console.print(f"  • {line}", highlight=False)


def render_measured(predicted: Plan, measured: Measured, console: Console) -> None:
    """Print predicted vs measured peaks (GiB, signed error of the prediction), and the measurement's notes."""
    table = Table(title=f"predicted vs measured on {measured.device} ({measured.steps} steps)", title_justify="left")
    table.add_column("figure")
    table.add_column("predicted GiB", justify="right")
    table.add_column("measured GiB", justify="right")
    table.add_column("error", justify="right")
    for name, pred, meas in measured.versus(predicted.estimate, predicted.card):
        table.add_row(name, f"{pred:.2f}", "-" if meas is None else f"{meas:.2f}", _error(pred, meas))
    console.print(table)
    est = predicted.estimate
    if measured.tokens_per_s:
        console.print(f"measured {measured.tokens_per_s:,.0f} tok/s"
                      + (f" (predicted {est.tokens_per_s:,.0f})" if est.tokens_per_s else ""))
    elif measured.step_s:
        console.print(f"measured {measured.step_s:.3f} s/step"
                      + (f" (predicted {est.step_s:.3f})" if est.step_s else ""))
    for line in measured.notes:
        console.print(f"  • {line}", highlight=False)


def _pct(error: float | None) -> str:
    return "-" if error is None else f"{error:+.1%}" if round(error, 3) else "0.0%"


def render_calibration(result: Calibration, console: Console) -> None:
    """Print each card and stack's correction and the errors before and after it (after: leave-one-out)."""
    data = result.to_json()
    if not data["groups"]:
        console.print(f"no observations in {result.observations_file}: `onecard fit MODEL --measure`, the "
                      "capabilities' runs on a GPU and `onecard fit MODEL ... --observed GIB` (a peak you measured) "
                      "add them")
        return
    table = Table(title=f"corrections from {result.observations_file}", title_justify="left",
                  caption=f"error = predicted / measured - 1; a correction needs {data['min_observations']} "
                  "observations; after: each observation predicted with the median of the others (leave-one-out)",
                  caption_justify="left")
    for name in ("card", "kind / stack", "observations", "scale", "median |error| before", "after",
                 "worst under before", "after"):
        table.add_column(name, justify="left" if name in ("card", "kind / stack") else "right")
    for g in data["groups"]:
        table.add_row(g["card"], g["kind"], str(g["observations"]),
                      f"x{g['scale']:.3f}" if g["scale"] is not None else
                      f"x{g['kind_scale']:.3f} ({g['job_kind']})" if g["kind_scale"] is not None else "none",
                      f"{g['before_median_abs_error']:.1%}", f"{g['after_median_abs_error']:.1%}",
                      _pct(g["before_worst_under"]), _pct(g["after_worst_under"]))
    overall = data["overall"]
    table.add_row(Text("all", style="bold"), "", str(sum(g["observations"] for g in data["groups"])), "",
                  f"{overall['before_median_abs_error']:.1%}", f"{overall['after_median_abs_error']:.1%}",
                  _pct(overall["before_worst_under"]), _pct(overall["after_worst_under"]))
    console.print(table)
    untested = sum(g["untested"] for g in data["groups"])
    if untested:
        console.print(f"{untested} observation(s) have fewer than {data['min_observations']} others of their stack "
                      "or kind on the card, so leave-one-out cannot test a correction on them: their 'after' is their "
                      f"'before' (a group shows what its correction does from its {data['min_observations'] + 1}th "
                      "observation on)", highlight=False)
    for line in result.notes:
        console.print(f"  • {line}", highlight=False)
    saved = len(data["corrections"])
    console.print(f"saved {saved} correction(s) to {result.saved_to}; `onecard fit` uses them from now on "
                  "(--no-calibration to compare)" if result.saved_to else f"{saved} correction(s), not saved")

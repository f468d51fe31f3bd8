"""`onecard fit`: plan a job on a card, and optionally solve, trace or measure it.

The CLI and the web app call `advise` (and `measure_run` for `--measure`, which is a recorded run).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from onecard.core import gpus
from onecard.core.gpus import GpuSpec
from onecard.fit import catalog
from onecard.fit.estimate import Estimate
from onecard.fit.job import FitJob
from onecard.fit.ladder import cheapest_fixes
from onecard.fit.observations import Figure, observe
from onecard.fit.plan import Plan, judge, plan, resolve_arch
from onecard.fit.report import to_json
from onecard.fit.solve import solve
from onecard.fit.trace import trace

__all__ = ["Advice", "advise", "measure_run", "card_summary", "can_run"]

_YOLO_SIZES = ("x", "l", "m", "s", "n")
# SDXL inference flag sets, cheapest first (the ladder's order: VAE slicing, then model, then sequential offload)
_SDXL_FLAGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("no memory-saving flags", {}), ("VAE slicing", {"vae_slicing": True}),
    ("VAE slicing + model CPU offload", {"vae_slicing": True, "offload": "model"}),
    ("VAE slicing + sequential CPU offload", {"vae_slicing": True, "offload": "sequential"}))


@dataclass
class Advice:
    """The planner's advice on a request: the plan, the cheapest fixes if it does not fit, what --solve/--trace add."""

    plan: Plan
    fixes: list[tuple[str, Plan]] = field(default_factory=list)
    solutions: list[Plan] | None = None
    traced: Estimate | None = None

    def to_json(self) -> dict[str, Any]:
        out = to_json(self.plan, self.fixes, self.solutions)
        if self.traced is not None:
            out["trace"] = _versus(self.plan.estimate, self.traced)
        return out


def advise(
    job: FitJob, *, fixed: Collection[str] = (), solutions: bool = False, top: int = 10, traced: bool = False
) -> Advice:
    """Plan `job`; find fixes when it does not fit; rank the settings that fit; trace it on fake tensors.

    Args:
        job: the request.
        fixed: knobs the user set explicitly; the search keeps them.
        solutions: also search the settings that fit, ranked (`onecard fit --solve`).
        top: how many solutions to keep.
        traced: also count the peak on fake tensors (`--trace`; needs `onecard[fit]`).
    """
    result = Advice(plan(job))
    if result.plan.fits is False:
        result.fixes = cheapest_fixes(job, result.plan.budget_gib)
    if solutions:
        result.solutions = solve(job, top=top, fixed=fixed)
    if traced:
        result.traced = trace(job)
    return result


def card_summary(card: GpuSpec, margin_gib: float = 0.5) -> list[str]:
    """A few lines on what a card runs, from the planner: the guide's jobs at their usual settings (`onecard doctor`).

    Each line is a question the guide answers with a number: the largest catalog LLM at 4-bit with an 8k context,
    QLoRA of an 8B at 2k tokens, SDXL at 1024 px, YOLOv8 training at batch 16, Whisper large-v3. The figures are the
    upper bounds `onecard fit` decides on.
    """
    budget = card.usable_gib - margin_gib

    def gib(**job: Any) -> float:
        """The job's safe upper bound on the card: what decides whether it fits (`plan.judge`)."""
        fit_job = FitJob(**job, margin_gib=margin_gib)
        upper = judge(resolve_arch(fit_job.model), fit_job, card).peak_upper_gib
        assert upper is not None  # judge always bounds
        return upper

    llms = sorted((a for a in catalog.CATALOG if a.family != "tinylm" and a.vision is None), key=catalog.n_params,
                  reverse=True)
    fits = [(a, p) for a in llms if (p := gib(model=a.key, job="infer", quant="nf4", ctx=8192)) <= budget]
    lines = [f"{card.name}: {card.vram_gib:.1f} GiB ({card.usable_gib:.2f} usable), planning on the safe upper bound "
             f"with a {margin_gib} GiB margin"]
    if fits:
        arch, peak = fits[0]
        largest = ", the catalog's largest" if arch is llms[0] else ""
        lines.append(f"LLM inference at 4-bit (nf4), 8k context: up to {arch.name} ({peak:.1f} GiB{largest})")
    else:
        lines.append("LLM inference at 4-bit (nf4), 8k context: no catalog LLM fits; llama.cpp can offload layers")
    qlora = [(b, p) for b in (16, 8, 4, 2, 1)  # planned as `onecard tune` runs it (fit's onecard stack)
             if (p := gib(model="llama-3.1-8b", job="train", method="qlora", seq=2048, batch=b, stack="onecard"))
             <= budget]
    lines.append("QLoRA Llama 3.1 8B at 2048 tokens: " + (
        f"fits with micro-batch {qlora[0][0]} + gradient accumulation, checkpointing on ({qlora[0][1]:.1f} GiB, "
        "as `onecard tune` runs it)" if qlora else "does not fit even at micro-batch 1 with checkpointing"))
    sdxl = next(((name, p) for name, flags in _SDXL_FLAGS
                 if (p := gib(model="sdxl", job="infer", resolution=1024, **flags)) <= budget), None)
    lines.append("SDXL 1024 px, 1 image: " + (f"with {sdxl[0]} ({sdxl[1]:.1f} GiB, {budget - sdxl[1]:.1f} to spare)"
                                                 if sdxl else "does not fit"))
    yolo = next(((s, p) for s in _YOLO_SIZES if (p := gib(model=f"yolov8{s}", job="train", batch=16)) <= budget),
                None)
    lines.append("YOLOv8 training at 640 px, batch 16: " + (
        f"up to YOLOv8{yolo[0]} ({yolo[1]:.1f} GiB)" if yolo else "not even YOLOv8n"))
    whisper = {q: gib(model="whisper-large-v3", job="infer", runtime="faster-whisper", quant=q)
               for q in ("fp16", "int8")}
    lines.append("Whisper large-v3 (faster-whisper, beam 5): " + ", ".join(
        f"{q} {'fits' if p <= budget else 'does not fit'} ({p:.1f} GiB)" for q, p in whisper.items()))
    return lines


def can_run(detected: list[dict[str, Any]], gpu: str | None = None) -> dict[str, Any]:
    """What `onecard doctor` ends with: the card (the named one, else the detected GPU 0) and `card_summary` lines.

    Args:
        detected: the GPUs of the doctor's report (dicts with "catalog_key" and "vram_total_gib").
        gpu: a catalog card name that replaces the detected one.
    """
    if gpu:
        card = gpus.lookup(gpu)
    elif detected:
        first = detected[0]
        card = gpus.lookup(first["catalog_key"]) if first["catalog_key"] else gpus.custom(first["vram_total_gib"])
    else:
        return {"card": None, "lines": [
            "no NVIDIA GPU here, so there is no card to plan for; ask about one by name:",
            "`onecard fit MODEL --gpu 4070ti` for one job, `onecard doctor --gpu 4070ti` for this summary"]}
    return {"card": card.key, "lines": card_summary(card)}


def measure_run(
    job: FitJob, *, runs_root: str | Path | None = None, report_to: tuple[str, ...] = ("trackio",)
) -> tuple[Plan, Any, str]:
    """Run the job for a few steps on the GPU, as a recorded run holding the prediction and the measurement; the
    measured peak is appended to the observations `onecard fit calibrate` fits its corrections on.

    Returns:
        The plan, the `Measured` peaks, and the run id.
    """
    from onecard.core.records import start_run
    from onecard.fit.measure import measure

    predicted = plan(job)
    with start_run("fit", job, runs_root=runs_root, report_to=report_to) as run:
        run.set("prediction", to_json(predicted))
        measured = measure(job)
        run.set("measured", {k: v for k, v in vars(measured).items() if k != "notes"} | {"notes": measured.notes})
        metrics: dict[str, float] = {}
        for name, pred, meas in measured.versus(predicted.estimate, predicted.card):
            if meas is None:
                continue
            key = name.split(" (")[0].replace(" ", "_")
            metrics[f"{key}_measured_gib"] = round(meas, 3)
            metrics[f"{key}_predicted_gib"] = round(pred, 3)
            metrics[f"{key}_error_pct"] = round(100 * (pred - meas) / meas, 1)
        run.set_metrics(metrics)
        # kept for `onecard fit calibrate`: the figure nearest what fit decides on (process, else reserved)
        figure: Figure = "process" if measured.process_gib else "reserved"
        observed = observe(job, figure, measured.process_gib or measured.peak_reserved_gib,
                           f"fit --measure run {run.id}")
        run.set("observation", None if observed is None else asdict(observed))
    return predicted, measured, run.id


def _versus(analytic: Estimate, traced: Estimate) -> dict[str, Any]:
    parts = sorted(set(analytic.parts) | set(traced.parts))
    return {
        "peak_allocated_gib": {"analytic": round(analytic.peak_allocated_gib, 3),
                               "traced": round(traced.peak_allocated_gib, 3)},
        "peak_reserved_gib": {"analytic": round(analytic.peak_reserved_gib, 3),
                              "traced": round(traced.peak_reserved_gib, 3)},
        "parts": {p: {"analytic": round(analytic.parts.get(p, 0.0), 3), "traced": round(traced.parts.get(p, 0.0), 3)}
                  for p in parts},
        "assumptions": traced.assumptions,
    }

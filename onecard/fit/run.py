"""`onecard fit`: plan a job on a card, and optionally solve, trace or measure it.

The CLI and the web app call `answer` (and `measure_run` for `--measure`, which is a recorded run).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onecard.fit.estimate import Estimate
from onecard.fit.job import FitJob
from onecard.fit.plan import Plan, plan

__all__ = ["Answer", "answer", "measure_run"]


@dataclass
class Answer:
    """The plan for the request, the cheapest fixes when it does not fit, and what --solve/--trace add."""

    plan: Plan
    fixes: list[tuple[str, Plan]] = field(default_factory=list)
    solutions: list[Plan] | None = None
    traced: Estimate | None = None

    def to_json(self) -> dict[str, Any]:
        from onecard.fit.report import to_json

        out = to_json(self.plan, self.fixes, self.solutions)
        if self.traced is not None:
            out["trace"] = _versus(self.plan.estimate, self.traced)
        return out


def answer(
    job: FitJob, *, fixed: Collection[str] = (), solve: bool = False, top: int = 10, trace: bool = False
) -> Answer:
    """Plan `job`; find fixes when it does not fit; rank settings (`solve`); trace it on fake tensors (`trace`).

    Args:
        job: the request.
        fixed: knobs the user set explicitly; `solve` keeps them.
        solve: also search the settings that fit, ranked.
        top: how many solutions to keep.
        trace: also count the peak on fake tensors (needs `onecard[fit]`).
    """
    from onecard.fit.ladder import cheapest_fixes

    result = Answer(plan(job))
    if result.plan.fits is False:
        result.fixes = cheapest_fixes(job, result.plan.budget_gib)
    if solve:
        from onecard.fit.solve import solve as search

        result.solutions = search(job, top=top, fixed=fixed)
    if trace:
        from onecard.fit.trace import trace as trace_job

        result.traced = trace_job(job)
    return result


def measure_run(
    job: FitJob, *, runs_root: str | Path | None = None, report_to: tuple[str, ...] = ("trackio",)
) -> tuple[Plan, Any, str]:
    """Run the job for a few steps on the GPU, as a recorded run holding the prediction and the measurement.

    Returns:
        The plan, the `Measured` peaks, and the run id.
    """
    from onecard.core.records import start_run
    from onecard.fit.measure import measure
    from onecard.fit.report import to_json

    predicted = plan(job)
    with start_run("fit", job, runs_root=runs_root, report_to=report_to) as run:
        run.set("prediction", to_json(predicted))
        measured = measure(job)
        run.set("measured", {k: v for k, v in vars(measured).items() if k != "notes"} | {"notes": measured.notes})
        metrics: dict[str, float] = {}
        for name, pred, meas in measured.versus(predicted.estimate):
            if meas is None:
                continue
            key = name.split(" (")[0].replace(" ", "_")
            metrics[f"{key}_measured_gib"] = round(meas, 3)
            metrics[f"{key}_predicted_gib"] = round(pred, 3)
            metrics[f"{key}_error_pct"] = round(100 * (pred - meas) / meas, 1)
        run.set_metrics(metrics)
    return predicted, measured, run.id


def _versus(analytic: Estimate, traced: Estimate) -> dict[str, Any]:
    parts = sorted(set(analytic.parts) | set(traced.parts))
    return {
        "peak_allocated_gib": {"analytic": round(analytic.peak_allocated_gib, 3),
                               "traced": round(traced.peak_allocated_gib, 3)},
        "parts": {p: {"analytic": round(analytic.parts.get(p, 0.0), 3), "traced": round(traced.parts.get(p, 0.0), 3)}
                  for p in parts},
        "assumptions": traced.assumptions,
    }

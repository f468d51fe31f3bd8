"""The retry-on-out-of-memory loop a training capability wraps its work in.

The capability hands `retry_on_oom` the job it planned and a function that does the work for one job (load, build,
train). When the GPU runs out of memory, the loop frees what the failed attempt held, takes the next step of fit's
out-of-memory ladder (`onecard.fit.ladder.oom_ladder`: shorter sequences, 4-bit, checkpointing, a smaller
micro-batch...), reports the step so the run record can keep it, and does the work again with the cheaper job. When
the ladder has no further step it gives up with an error that names every step it took.

No torch import here: `onecard.fit` answers without torch, and an error can only be torch's if torch is loaded.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from onecard.core.errors import OnecardError
from onecard.fit.job import FitJob
from onecard.fit.ladder import oom_ladder

__all__ = ["OomStep", "retry_on_oom", "is_oom"]

T = TypeVar("T")


@dataclass(frozen=True)
class OomStep:
    """One step down the ladder, taken after an out-of-memory error.

    Attributes:
        job: the cheaper job the work runs next.
        change: what changed, e.g. "gradient checkpointing on" (`onecard.fit.ladder.describe_changes`).
        error: why: the first line of the out-of-memory error the previous job raised.
    """

    job: FitJob
    change: str
    error: str


def is_oom(error: BaseException) -> bool:
    """Whether an error is the GPU running out of memory: torch's OutOfMemoryError, or a CUDA message saying so."""
    torch = sys.modules.get("torch")  # not imported: a torch error cannot exist unless torch is loaded
    return (torch is not None and isinstance(error, torch.OutOfMemoryError)) or "CUDA out of memory" in str(error)


def retry_on_oom(job: FitJob, work: Callable[[FitJob], T], *, ladder: Iterable[tuple[FitJob, str]] | None = None,
                 on_step: Callable[[OomStep], None] | None = None) -> T:
    """Do `work(job)`; after each out-of-memory error, step down fit's ladder and do it again with the cheaper job.

    Args:
        job: the job as planned.
        work: does the capability's work for one job and returns its result; it raises the GPU's out-of-memory
            error (`is_oom`) when the job does not fit. Any other error passes through untouched.
        ladder: the (cheaper job, what changed) steps to take, in order; None: `oom_ladder(job)`. A capability
            passes its own where its machine cannot take some steps (4-bit weights need bitsandbytes).
        on_step: called with each step taken, before the work runs again: to record it and to say it.

    Returns:
        What `work` returned for the first job that fit.

    Raises:
        OnecardError: the work ran out of memory and the ladder has no further step; it names each step taken.
    """
    steps = iter(oom_ladder(job) if ladder is None else ladder)
    changes: list[str] = []
    while True:
        try:
            return work(job)
        except Exception as e:
            if not is_oom(e):
                raise
            step = next(steps, None)
            if step is None:
                tried = "".join(f"; then with {change}" for change in changes)
                raise OnecardError(
                    f"out of GPU memory running {job.model} ({job.job}) as planned{tried}; fit's out-of-memory "
                    "ladder has no further step",
                    f"use a smaller model or a larger card (`onecard fit {job.model} --job {job.job} --solve` shows "
                    "what fits where)") from e
            error = str(e).splitlines()[0] if str(e) else type(e).__name__
        # Outside the `except` block: the error and its traceback, which hold the failed attempt's frames (its
        # model, its optimizer), are gone, so the collector can free them.
        _free_gpu_memory()
        job, change = step
        changes.append(change)
        if on_step is not None:
            on_step(OomStep(job=job, change=change, error=error))


def _free_gpu_memory() -> None:
    """Give back what a failed attempt held: its objects (cycles too), then torch's cached CUDA blocks."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.cuda.empty_cache()  # does nothing where CUDA never started

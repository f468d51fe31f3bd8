"""Plumbing around the transformers Trainer that `tune` and `vlm tune` share: the run-record callback, Ctrl-C, dtype.

It sits in core, not fit, because none of it is about memory or the ladder: it is about run records (`core.records`)
and the device (`core.device`). `onecard.core` imports without torch, so transformers and torch are imported only
inside functions; `RecordCallback` subclasses transformers' `TrainerCallback`, so it is built on first use (the
module's `__getattr__`) and is then one class for every caller, which tests can patch.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from onecard.core.progress import stderr_console
from onecard.core.records import StopFlag, stop_after_step

__all__ = ["RecordCallback", "stop_on_signal", "precision", "logged_losses"]  # noqa: F822 (RecordCallback: the module __getattr__)

_built: dict[str, type] = {}


def precision(name: str, device: str) -> Any:
    """The compute torch dtype (`onecard.core.device.select_dtype`): bf16 where the device runs it natively, fp16 on
    other CUDA GPUs (the trainer scales the loss), else fp32; or as asked."""
    import torch

    from onecard.core.device import select_dtype

    return getattr(torch, select_dtype(name, device))


@contextlib.contextmanager
def stop_on_signal(flag: StopFlag) -> Iterator[None]:
    """`core.records.stop_after_step` around the trainer: Ctrl-C while its loop steps saves after the step and stops;
    before the loop starts (building the trainer, tokenizing) or after it ends there is no step to finish and save, so
    Ctrl-C aborts at once. `flag.stepping` is cleared at the end: a try that failed (out of memory) did not reach
    on_train_end."""
    try:
        with stop_after_step(flag):
            yield
    finally:
        flag.stepping = False


def logged_losses(checkpoint: Path) -> list[list[float]]:
    """The training-loss points the trainer logged up to a checkpoint (to continue the curve)."""
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return [[e["step"], e["loss"]] for e in state["log_history"] if "loss" in e]


def _record_callback() -> type:
    from transformers import TrainerCallback

    class RecordCallback(TrainerCallback):
        """Sends each logged loss to the run's trackers and the loss history, prints a line to stderr, and turns a
        Ctrl-C (`StopFlag`) into a checkpoint and a stop at the end of the step.

        One callback serves every try of a run (after an out-of-memory error the trainer is built again); `step` is
        the optimizer step reached, to say where a try stopped.
        """

        def __init__(self, run: Any, history: dict[str, list[list[float]]], stop: StopFlag | None = None) -> None:
            self.run, self.history, self.stop = run, history, stop
            self.console = stderr_console()
            self.tick = time.perf_counter()
            self.tick_step = self.step = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # a try starts at step 0 or at its checkpoint's step: time its steps from here
            self.tick, self.tick_step = time.perf_counter(), state.global_step
            self.step = state.global_step
            if self.stop is not None:
                self.stop.stepping = True

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.stop is not None:
                self.stop.stepping = False

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
                   **kwargs: Any) -> None:
            logs = logs or {}
            step = state.global_step
            if "loss" in logs:
                now = time.perf_counter()
                per_step = (now - self.tick) / max(1, step - self.tick_step)
                self.tick, self.tick_step = now, step
                self.history["train"].append([step, float(logs["loss"])])
                self.run.log({"train/loss": logs["loss"], "lr": logs.get("learning_rate", 0.0),
                              "s_per_step": per_step}, step=step)
                self.console.print(f"step {step}/{state.max_steps}: loss {logs['loss']:.4f}, "
                                   f"lr {logs.get('learning_rate', 0.0):.2e}, {per_step:.2f} s/step")
            if "eval_loss" in logs:
                self.history["dev"].append([step, float(logs["eval_loss"])])
                self.run.log({"dev/loss": logs["eval_loss"]}, step=step)
                self.console.print(f"step {step}: dev loss {logs['eval_loss']:.4f}")

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.step = state.global_step
            if state.global_step >= state.max_steps:
                control.should_log = True  # the final loss is always logged
            if self.stop is not None and self.stop.requested:
                control.should_save = True  # the trainer saves a resumable checkpoint at this step, then stops
                control.should_training_stop = True

    return RecordCallback


def __getattr__(name: str) -> Any:
    if name != "RecordCallback":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _built:
        _built[name] = _record_callback()
    return _built[name]

"""Plumbing around the transformers Trainer that `tune` and `vlm tune` share: the run-record callback, Ctrl-C, dtype,
TRL's arguments, and the trainer itself (its checkpoints written whole: `core.checkpoints`).

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
from typing import Any, Protocol

from onecard.core.progress import stderr_console
from onecard.core.records import StopFlag, stop_after_step

__all__ = ["RecordCallback", "stop_on_signal", "precision", "logged_losses", "sft_args", "sft_trainer"]  # noqa: F822 (RecordCallback: the module __getattr__)

_built: dict[str, type] = {}



class TryKnobs(Protocol):
    """What one try's settings give TRL's arguments (`onecard.fit.choose.Settings`)."""

    @property
    def micro_batch_size(self) -> int: ...
    @property
    def grad_accum(self) -> int: ...
    @property
    def gradient_checkpointing(self) -> bool: ...
    @property
    def optimizer(self) -> str: ...  # a Trainer `optim` name


class ScheduleKnobs(Protocol):
    """What the user's run config gives TRL's arguments (`tune`'s and `vlm`'s TuneConfig)."""

    @property
    def learning_rate(self) -> float: ...
    @property
    def lr_scheduler(self) -> str: ...
    @property
    def warmup_ratio(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...
    @property
    def epochs(self) -> float: ...
    @property
    def max_steps(self) -> int | None: ...
    @property
    def logging_steps(self) -> int: ...
    @property
    def save_steps(self) -> int: ...
    @property
    def eval_steps(self) -> int | None: ...
    @property
    def seed(self) -> int: ...


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


def sft_args(out: Path, settings: TryKnobs, config: ScheduleKnobs, *, dtype: Any, device: str, **rows: Any) -> Any:
    """TRL's SFTConfig for one try: the knobs fit chose (`settings`) and the ones the user set (`config`). `rows` is
    how the trainer takes the rows, which differs by capability (text: max_length and packing; images: the columns
    the collator needs). Metrics go to the run record (`RecordCallback`), not to TRL's trackers."""
    import torch
    from trl.trainer.sft_config import SFTConfig

    checkpointing = settings.gradient_checkpointing
    return SFTConfig(
        output_dir=str(out), per_device_train_batch_size=settings.micro_batch_size,
        per_device_eval_batch_size=settings.micro_batch_size, gradient_accumulation_steps=settings.grad_accum,
        gradient_checkpointing=checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        optim=settings.optimizer, learning_rate=config.learning_rate, lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio, weight_decay=config.weight_decay, num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1, bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16,
        use_cpu=device.startswith("cpu"), logging_steps=config.logging_steps, logging_first_step=True,
        save_steps=config.save_steps, save_total_limit=2, eval_strategy="steps" if config.eval_steps else "no",
        eval_steps=config.eval_steps, report_to="none", seed=config.seed, data_seed=config.seed,
        dataloader_pin_memory=False, disable_tqdm=True,
        # Evaluation needs the loss only: gathering the dev logits (rows x length x vocabulary) costs GBs.
        prediction_loss_only=True, **rows,
    )


def sft_trainer(model: Any, processing_class: Any, args: Any, train_rows: list[dict[str, Any]],
                dev_rows: list[dict[str, Any]], peft_config: Any, callbacks: list[Any],
                data_collator: Any = None) -> Any:
    """TRL's SFTTrainer over rows already encoded (`core.checkpoints.AtomicSFTTrainer`: checkpoints whole or not at
    all), its console printers replaced by `callbacks` (stdout stays clean for --json)."""
    import datasets
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from onecard.core.checkpoints import AtomicSFTTrainer

    datasets.disable_progress_bars()  # rows arrive encoded: TRL's truncate/filter passes take no time worth a bar
    trainer = AtomicSFTTrainer(model=model, args=args, processing_class=processing_class, peft_config=peft_config,
                               data_collator=data_collator, train_dataset=Dataset.from_list(train_rows),
                               eval_dataset=Dataset.from_list(dev_rows) if dev_rows else None, callbacks=callbacks)
    for printer in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(printer)
    return trainer


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

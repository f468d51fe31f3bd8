"""Training components around TRL's SFTTrainer: its arguments, the run-record callback, Ctrl-C, plots.

Each is a small function of flat arguments; `run.py` puts them together.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from onecard.core.records import StopFlag
from onecard.core.trainer import RecordCallback, precision, stop_on_signal

__all__ = ["sft_args", "make_trainer", "score_responses_only", "RecordCallback", "StopFlag", "stop_on_signal",
           "plot_losses", "precision"]


def sft_args(out: Path, *, micro_batch_size: int, grad_accum: int, gradient_checkpointing: bool, optimizer: str,
             max_seq_length: int, packing: bool, learning_rate: float, lr_scheduler: str, warmup_ratio: float,
             weight_decay: float, epochs: float, max_steps: int | None, dtype: torch.dtype, device: str,
             logging_steps: int, save_steps: int, eval_steps: int | None, seed: int,
             deepspeed: str | None = None) -> Any:
    """TRL's SFTConfig for one attempt. Metrics go to the run record (our callback), not to TRL's trackers."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(out), per_device_train_batch_size=micro_batch_size, per_device_eval_batch_size=micro_batch_size,
        gradient_accumulation_steps=grad_accum, gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None,
        optim=optimizer, learning_rate=learning_rate, lr_scheduler_type=lr_scheduler, warmup_steps=warmup_ratio,
        weight_decay=weight_decay, num_train_epochs=epochs, max_steps=max_steps or -1,
        bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16, use_cpu=device.startswith("cpu"),
        # Rows arrive tokenized with their labels (formatting.encode_rows); packing puts several rows in one
        # sequence, and the padding-free collator restarts position ids per row, so attention stays within a row.
        max_length=max_seq_length, packing=packing, packing_strategy="bfd",
        logging_steps=logging_steps, logging_first_step=True, save_steps=save_steps, save_total_limit=2,
        eval_strategy="steps" if eval_steps else "no", eval_steps=eval_steps, report_to="none", seed=seed,
        data_seed=seed, dataloader_pin_memory=False, disable_tqdm=True, deepspeed=deepspeed,
        # Evaluation needs the loss only: gathering the dev logits (rows x length x vocabulary) costs GBs.
        prediction_loss_only=True,
    )


def make_trainer(model: Any, tokenizer: Any, args: Any, train_rows: list[dict[str, list[int]]],
                 dev_rows: list[dict[str, list[int]]], peft_config: Any, callbacks: list[Any]) -> Any:
    """An SFTTrainer over pre-tokenized rows, its console printers replaced by `callbacks` (stdout stays clean), its
    checkpoints written whole or not at all (`onecard.tune.checkpoints`)."""
    import datasets
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from onecard.tune.checkpoints import AtomicSFTTrainer

    datasets.disable_progress_bars()  # rows arrive tokenized: TRL's truncate/filter passes take no time worth a bar

    trainer = AtomicSFTTrainer(model=model, args=args, processing_class=tokenizer, peft_config=peft_config,
                               train_dataset=Dataset.from_list(train_rows),
                               eval_dataset=Dataset.from_list(dev_rows) if dev_rows else None, callbacks=callbacks)
    for printer in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(printer)
    return trainer


@contextlib.contextmanager
def score_responses_only() -> Iterator[None]:
    """Within this block, TRL's fused LM head computes the logits of the response tokens only, on every device.

    TRL scores only the labelled positions where its Triton kernel runs (CUDA, XPU) and every position elsewhere,
    which keeps tile shapes fixed for graph compilers. Eager PyTorch on a CPU or a Mac gains nothing from that: the
    prompt tokens' logits are computed and then multiplied by zero (with SmolLM2's 49k vocabulary, 200 MB for each
    4 x 256 micro-batch, allocated and freed again every step). Skipping them gives the same loss and gradients in
    less time and memory. A TRL without this switch is left as it is.
    """
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        yield
        return
    trl_utils._use_triton = lambda device: device.type in ("cpu", "mps") or original(device)
    try:
        yield
    finally:
        trl_utils._use_triton = original


def plot_losses(history: dict[str, list[list[float]]], path: Path, title: str) -> None:
    """A PNG of the training and dev loss against the optimizer step."""
    from onecard.core import plots

    plots.plot_losses(history, path, title, xlabel="optimizer step", ylabel="cross-entropy on responses (nats/token)")

"""Training components around TRL's SFTTrainer for text rows: the trainer and its response-only scoring.

TRL's arguments, the run-record callback, Ctrl-C and dtype are `onecard.core.trainer`'s, shared with `vlm tune` (the
last three re-exported here); `run.py` puts them together with `onecard.core.peft_run`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from onecard.core.records import StopFlag
from onecard.core.trainer import RecordCallback, precision, sft_trainer, stop_on_signal

__all__ = ["make_trainer", "score_responses_only", "RecordCallback", "StopFlag", "stop_on_signal", "precision"]


def make_trainer(model: Any, tokenizer: Any, args: Any, train_rows: list[dict[str, list[int]]],
                 dev_rows: list[dict[str, list[int]]], peft_config: Any, callbacks: list[Any]) -> Any:
    """An SFTTrainer over pre-tokenized rows (`onecard.core.trainer.sft_trainer`: checkpoints written whole or not at
    all, its console printers replaced by `callbacks`); TRL's own collator pads the ids and labels."""
    return sft_trainer(model, tokenizer, args, train_rows, dev_rows, peft_config, callbacks)


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

"""Turn the "auto" knobs of a tune job into numbers with `onecard.fit`, and step down its ladder after an OOM.

The planner searches the knobs the user left on "auto" (method, micro-batch with gradient accumulation at the same
effective batch, gradient checkpointing, optimizer, sequence length) for the fastest setting that fits the card, and
keeps the ones the user set. It plans with fit's `onecard` stack, the one `tune` runs (TRL's SFTTrainer with its fused
LM head, PEFT adapters with the config's lora_dropout; `onecard.fit.stacks`). Without a card to plan for (a CPU run,
no --gpu/--vram) there is no memory budget: the auto knobs take plain defaults, and the record says so. The search
itself, the settings and the ladder are `onecard.fit.choose`, shared with `vlm tune`.
"""

from __future__ import annotations

from onecard.fit.choose import HF_OPTIMIZER, Settings, ladder, settings_of
from onecard.fit.choose import choose as first_fit
from onecard.fit.job import FitJob
from onecard.tune.config import TuneConfig

__all__ = ["Settings", "choose", "settings_of", "ladder", "HF_OPTIMIZER"]


def choose(config: TuneConfig, model: str, longest_row: int, max_positions: int, four_bit: bool,
           on_gpu: bool) -> tuple[Settings, FitJob]:
    """Resolve every "auto" knob; returns the settings and the fit job they correspond to (for the OOM ladder).

    Args:
        config: the tune config.
        model: the model folder (fit reads its config.json).
        longest_row: the longest training row in tokens (the auto sequence length before the planner's say).
        max_positions: the model's context limit.
        four_bit: whether 4-bit weights and 8-bit optimizers run here.
        on_gpu: whether training runs on a GPU (plans for the detected card); on a CPU only a named card is planned.
    """
    seq = config.max_seq_length if config.max_seq_length != "auto" else min(max_positions, -(-longest_row // 64) * 64)
    settings, job = first_fit(config, model, seq, four_bit, on_gpu, rows=f"sequence {seq}",
                              remedy="lower --max-seq-length")
    if seq > max_positions:  # auto stops at the model's positions; a length given past them is trained as asked
        settings.source += (f"; sequence {seq} is past the {max_positions} positions the model was trained for: "
                            "rows that long train beyond what it has seen (RoPE extrapolates poorly)")
    return settings, job

"""Turn the "auto" knobs of a VLM tune into numbers with `onecard.fit`, and step down its ladder after an OOM.

fit sizes a LLaVA-style train job from the model folder's config.json (`onecard.fit.readers`): the vision tower and
projector as frozen 16-bit weights (kept out of NF4, as `model.load_model` loads them), the image tokens added to
each sequence (`fit.llm_train`: seq + image tokens), LoRA on the language model's linear layers. It plans with the
`onecard` stack: TRL's SFTTrainer (its fused LM head) with PEFT adapters at lora_dropout 0.05, what `vlm tune` runs.
The job's `seq` is the text part of a row; `Settings.max_seq_length` adds the image tokens back (what a row may hold).
Without a card to plan for (a CPU run, no --gpu/--vram) the auto knobs take plain defaults, and the record says so.
The search itself, the settings and the ladder are `onecard.fit.choose`, shared with `tune`.
"""

from __future__ import annotations

from onecard.core.errors import ConfigError
from onecard.fit.choose import HF_OPTIMIZER, Settings, ladder
from onecard.fit.choose import choose as first_fit
from onecard.fit.choose import settings_of as fit_settings_of
from onecard.fit.job import FitJob
from onecard.fit.plan import Plan
from onecard.vlm.config import TuneConfig

__all__ = ["Settings", "choose", "settings_of", "ladder", "HF_OPTIMIZER"]


def settings_of(job: FitJob, image_tokens: int, source: str, planned: Plan | None = None) -> Settings:
    """The Settings a fit job stands for (its text `seq` plus the image tokens), with the plan's predicted peaks."""
    return fit_settings_of(job, source, planned, image_tokens)


def choose(config: TuneConfig, model: str, longest_text: int, image_tokens: int, four_bit: bool,
           on_gpu: bool) -> tuple[Settings, FitJob]:
    """Resolve every "auto" knob; returns the settings and the fit job they correspond to (for the OOM ladder).

    Args:
        config: the tune config.
        model: the model folder (fit reads its config.json).
        longest_text: the longest training row's text tokens (image tokens left out).
        image_tokens: the image tokens of the row with the most.
        four_bit: whether 4-bit weights and 8-bit optimizers run here.
        on_gpu: whether training runs on a GPU (plans for the detected card); on a CPU only a named card is planned.
    """
    if config.max_seq_length != "auto":
        seq = config.max_seq_length - image_tokens
        if seq < 1:
            raise ConfigError(f"max_seq_length {config.max_seq_length} leaves no room for text next to the "
                              f"{image_tokens} image tokens of a row", f"set it above {image_tokens}, or auto")
    else:
        seq = -(-longest_text // 64) * 64
    return first_fit(config, model, seq, four_bit, on_gpu, image_tokens=image_tokens,
                     extra={"train_projector": True} if config.train_projector else None,
                     rows=f"{seq} text + {image_tokens} image tokens", remedy="shorten the rows")

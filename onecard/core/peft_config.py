"""The knobs `tune train` and `vlm tune` share (`AdapterTuneConfig`): each capability's TuneConfig subclasses it,
says what its model and rows are, and adds its own knobs. The run sequence around them is `core.peft_run`'s."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

__all__ = ["AdapterTuneConfig"]


class AdapterTuneConfig(BaseModel):
    """The knobs `tune train` and `vlm tune` share: a LoRA / QLoRA adapter trained with TRL on JSONL rows, its
    train/dev split, the optimizer and schedule, and the card fit plans the "auto" values for. Each capability's
    TuneConfig says what its model and rows are (`model`, `data`, `max_seq_length`, `lora_targets`) and adds its
    own knobs; the fields keep this order in `--help` and in a run's saved config."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="the model to tune")
    data: str = Field(description="JSONL training file")
    dev_data: str | None = Field(None, description="JSONL dev file (None: a seeded split of --data, stored with the run)")
    dev_fraction: float = Field(0.05, gt=0, lt=1, description="fraction of --data held out as the dev set when --dev-data is not given")
    dedupe: bool = Field(True, description="drop rows that repeat an earlier row exactly (reported by line number)")

    max_seq_length: int | Literal["auto"] = Field("auto", description="tokens per row; auto: the longest row, as fit allows")
    method: Literal["auto", "lora", "qlora"] = Field("auto", description="lora: 16-bit base weights; qlora: 4-bit NF4 base (CUDA + bitsandbytes); auto: as fit chooses where 4-bit runs, else lora")
    lora_rank: int = Field(16, ge=1, description="LoRA rank r")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling alpha (the update is scaled by alpha / r)")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA input")
    lora_targets: str = Field("all-linear", description="modules that get adapters: all-linear, or a comma list such as q_proj,v_proj")

    batch_size: int = Field(16, ge=1, description="rows per optimizer step (the effective batch: micro-batch x gradient accumulation)")
    micro_batch_size: int | Literal["auto"] = Field("auto", description="rows per forward pass; auto: the largest fit allows at this batch size")
    gradient_checkpointing: bool | Literal["auto"] = Field("auto", description="recompute activations in the backward pass to save memory; auto: as fit decides")
    optimizer: Literal["auto", "adamw_torch_fused", "adamw_bnb_8bit", "paged_adamw_8bit"] = Field("auto", description="auto: paged 8-bit AdamW for qlora, AdamW otherwise (as fit decides)")
    learning_rate: float = Field(2e-4, gt=0, description="peak learning rate")
    lr_scheduler: Literal["cosine", "linear", "constant"] = Field("cosine", description="learning-rate schedule after the warm-up")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="fraction of the steps spent warming up")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    epochs: float = Field(1.0, gt=0, description="passes over the training rows (ignored when --max-steps is set)")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps in total (None: --epochs)")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 where the device runs it natively (Ampere+ GPUs, CPUs with AVX512-BF16 or AMX), fp16 on older GPUs, else fp32")

    logging_steps: int = Field(10, ge=1, description="log the training loss every N steps")
    save_steps: int = Field(100, ge=1, description="save a resumable checkpoint every N steps (and on Ctrl-C)")
    eval_steps: int | None = Field(None, ge=1, description="dev loss every N steps (None: at the end only)")
    seed: int = Field(42, description="random seed: LoRA init, data order, and the train/dev split")
    device: str = Field("auto", description="auto (the GPU if there is one), cuda, cuda:1, mps, cpu")
    gpu: str | None = Field(None, description="card to plan the auto knobs for (4070ti, rtx-3060...); None: the detected one")
    vram: float | None = Field(None, gt=0, description="card memory in GiB to plan for, instead of --gpu")

    @field_validator("max_seq_length", "micro_batch_size")
    @classmethod
    def _at_least(cls, value: int | str, info: ValidationInfo) -> int | str:
        # a bound on the int side of `int | "auto"`: one message that names the key (not one per side of the union)
        least = {"max_seq_length": 8, "micro_batch_size": 1}[str(info.field_name)]
        if value != "auto" and int(value) < least:
            raise ValueError(f"should be at least {least}, or auto")
        return value

"""Configs of `onecard tune`: data check, train, eval, export.

"auto" means: ask `onecard.fit` for the value on the detected (or named) card; the chosen values are printed and
saved with the run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

__all__ = ["CheckConfig", "TuneConfig", "EvalConfig", "ExportConfig", "TINY", "GgufType"]

TINY = "tiny"  # the model name of a tiny random Llama-style model built locally: a smoke test in seconds

# The first seven onecard writes itself (the gguf package); the rest llama.cpp quantizes (llama-cpp-python). The
# i-quants below 4 bits are left out: llama.cpp refuses or degrades them without an importance matrix.
GgufType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0",
                   "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k", "q5_1",
                   "iq4_nl", "iq4_xs"]


class CheckConfig(BaseModel):
    """`onecard tune data check FILE`: schema, bad lines by number, duplicates, and lengths."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="JSONL file: alpaca instruction/input/output, prompt/response, or chat messages")
    model: str | None = Field(None, description="count lengths in this model's tokens, with its chat template (None: characters)")
    max_seq_length: int | None = Field(None, ge=8, description="report how many rows are longer than this many tokens")


class TuneConfig(BaseModel):
    """`onecard tune train`: a LoRA (any device) or QLoRA (CUDA + bitsandbytes) fine-tune on instruction data."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="'tiny', a model folder, a .gguf file, a packaged model (smollm2-135m-instruct) or a cached hub id")
    data: str = Field(description="JSONL training file: alpaca instruction/input/output, prompt/response, or chat messages")
    dev_data: str | None = Field(None, description="JSONL dev file (None: a seeded split of --data, stored with the run)")
    dev_fraction: float = Field(0.05, gt=0, lt=1, description="fraction of --data held out as the dev set when --dev-data is not given")
    dedupe: bool = Field(True, description="drop rows that repeat an earlier row exactly (reported by line number)")

    max_seq_length: int | Literal["auto"] = Field("auto", description="tokens per row, longer rows are truncated (and counted); auto: the longest row, as fit allows")
    packing: bool = Field(False, description="pack several rows into each sequence; attention never crosses rows (position ids restart per row)")

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

    accelerate_config: str | None = Field(None, description="write an accelerate + DeepSpeed config to this folder and print the `accelerate launch` command, instead of training")
    zero_stage: int = Field(2, ge=2, le=3, description="DeepSpeed ZeRO stage for --accelerate-config: 2 or 3")
    num_gpus: int = Field(2, ge=1, description="processes (GPUs) for --accelerate-config")
    deepspeed: str | None = Field(None, description="DeepSpeed JSON for the trainer (set by the files --accelerate-config writes)")

    @field_validator("max_seq_length", "micro_batch_size")
    @classmethod
    def _at_least(cls, value: int | str, info: ValidationInfo) -> int | str:
        # a bound on the int side of `int | "auto"`: one message that names the key (not one per side of the union)
        least = {"max_seq_length": 8, "micro_batch_size": 1}[str(info.field_name)]
        if value != "auto" and int(value) < least:
            raise ValueError(f"should be at least {least}, or auto")
        return value


class EvalConfig(BaseModel):
    """`onecard tune eval RUN`: dev loss and generation metrics of the base model and the tuned one, side by side."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(description="run id, unique prefix, run directory, or 'last'")
    data: str | None = Field(None, description="JSONL dev file (None: the run's own dev split)")
    max_rows: int = Field(50, ge=1, description="dev rows for the loss and for generation")
    max_new_tokens: int = Field(128, ge=1, description="tokens generated per prompt (greedy)")
    show: int = Field(3, ge=0, description="side-by-side samples in the report")
    batch_size: int = Field(8, ge=1, description="rows per forward pass")
    device: str = Field("auto", description="auto, cuda, mps, cpu")


class ExportConfig(BaseModel):
    """`onecard tune export RUN`: the adapter, merged weights, GGUF, and an Ollama Modelfile."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(description="run id, unique prefix, run directory, or 'last'")
    out: str | None = Field(None, description="folder to write into (None: RUN_DIR/export)")
    merge: bool = Field(False, description="also write the base model with the adapter merged in (safetensors)")
    gguf: GgufType | None = Field(None, description="also write a GGUF of the merged model in this type; the k-quants (q4_k_m...) need llama-cpp-python")
    ollama: bool = Field(False, description="also write an Ollama Modelfile with the model's chat template")
    llama_cpp: str | None = Field(None, description="llama.cpp folder whose convert_hf_to_gguf.py writes the GGUF (architectures other than Llama); None: $LLAMA_CPP_DIR or PATH, else onecard writes it")

    @field_validator("gguf", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value  # Q4_K_M as Ollama and llama.cpp spell it

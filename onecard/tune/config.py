"""Configs of `onecard tune`: data check, train, eval, export.

"auto" means: ask `onecard.fit` for the value on the detected (or named) card; the chosen values are printed and
saved with the run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from onecard.core.peft_config import AdapterTuneConfig

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


class TuneConfig(AdapterTuneConfig):
    """`onecard tune train`: a LoRA (any device) or QLoRA (CUDA + bitsandbytes) fine-tune on instruction data. The
    knobs it shares with `vlm tune` are `onecard.core.peft_config.AdapterTuneConfig`'s."""

    model: str = Field(description="'tiny', a model folder, a .gguf file, a packaged model (smollm2-135m-instruct) or a cached hub id")
    data: str = Field(description="JSONL training file: alpaca instruction/input/output, prompt/response, or chat messages")
    max_seq_length: int | Literal["auto"] = Field("auto", description="tokens per row, longer rows are truncated (and counted); auto: the longest row, as fit allows")
    packing: bool = Field(False, description="pack several rows into each sequence; attention never crosses rows (position ids restart per row)")

    accelerate_config: str | None = Field(None, description="write an accelerate + DeepSpeed config to this folder and print the `accelerate launch` command, instead of training")
    zero_stage: int = Field(2, ge=2, le=3, description="DeepSpeed ZeRO stage for --accelerate-config: 2 or 3")
    num_gpus: int = Field(2, ge=1, description="processes (GPUs) for --accelerate-config")
    deepspeed: str | None = Field(None, description="DeepSpeed JSON for the trainer (set by the files --accelerate-config writes)")


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

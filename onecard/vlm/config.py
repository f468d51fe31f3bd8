"""Configs of `onecard vlm`: data check, tune, chat, eval, export.

"auto" means: ask `onecard.fit` for the value on the detected (or named) card; the chosen values are printed and
saved with the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from onecard.core.peft_config import AdapterTuneConfig
from onecard.llm.config import ChatConfig

__all__ = ["CheckConfig", "TuneConfig", "VlmChatConfig", "EvalConfig", "ExportConfig", "TINY", "GGUF_TYPES"]

GGUF_TYPES = ("f32", "f16", "bf16", "q8_0")  # llama.cpp convert_hf_to_gguf.py --outtype (k-quants: llama-quantize after)
TINY = "tiny"  # the model name of a tiny random LLaVA built locally (onecard.vlm.tiny): a smoke test in seconds


class CheckConfig(BaseModel):
    """`onecard vlm data check FILE`: images that are missing or do not decode, bad rows by line, token lengths,
    duplicates."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="JSONL file: an image path (or a list of them, relative to the file) and either prompt/response or a messages conversation per row")
    model: str | None = Field(None, description="count token lengths with this model's processor, image tokens included ('tiny', a model folder or a cached hub id; None: characters only)")
    max_seq_length: int | None = Field(None, ge=8, description="report how many rows are longer than this many tokens (image tokens included)")


class TuneConfig(AdapterTuneConfig):
    """`onecard vlm tune`: a LoRA (any device) or QLoRA (CUDA + bitsandbytes) of a LLaVA-style model's language model
    on image-text pairs; the vision tower stays frozen, the loss is on the answers only. The knobs it shares with
    `tune train` are `onecard.core.peft_config.AdapterTuneConfig`'s."""

    model: str = Field(description="'tiny', a model folder, or a cached hub id such as llava-hf/llava-1.5-7b-hf")
    data: str = Field(description="JSONL training file: image path(s) and prompt/response or messages per row")
    dedupe: bool = Field(True, description="drop rows that repeat an earlier row exactly, images included (reported by line number)")
    max_seq_length: int | Literal["auto"] = Field("auto", description="tokens per row, image tokens included; longer rows are left out (an image cannot be cut); auto: the longest row, as fit allows")
    method: Literal["auto", "lora", "qlora"] = Field("auto", description="lora: 16-bit base weights; qlora: 4-bit NF4 language model (CUDA + bitsandbytes); auto: as fit chooses where 4-bit runs, else lora")
    lora_targets: str = Field("all-linear", description="language-model modules that get adapters: all-linear, or a comma list such as q_proj,v_proj (the vision tower never does)")
    batch_size: int = Field(8, ge=1, description="rows per optimizer step (the effective batch: micro-batch x gradient accumulation)")
    train_projector: bool = Field(False, description="also train the projector (image features -> the language model's embeddings) in full; it is saved with the adapter")


class VlmChatConfig(ChatConfig):
    """`onecard vlm chat`: the model and runtime, the images, and the chat's settings."""

    model: str = Field(description="transformers: 'tiny', a model folder or a cached hub id (llava-hf/llava-1.5-7b-hf); llamacpp: a vision model's .gguf (with --mmproj); ollama: a vision model tag (llava:7b)")
    backend: Literal["auto", "transformers", "llamacpp", "ollama", "openai"] = Field("auto", description="auto: llamacpp for a .gguf file, else transformers; ollama: a running Ollama; openai: an OpenAI-compatible server running a vision model")  # type: ignore[assignment]
    image: list[Path] = Field(default_factory=list, description="image files for the first message (--image a.jpg b.png); in the REPL, /image PATH adds more")
    system: str = Field("", description="system prompt; empty by default: LLaVA-1.5's template has no system turn, and a tune trains without one")
    gpu: str | None = Field(None, description="plan the weights for this card (4070ti, rtx-3060...); None: the detected one")


class EvalConfig(BaseModel):
    """`onecard vlm eval`: which model or tune run, on which rows, against which base."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(description="a vlm tune run (id, id prefix, run folder, or 'last') or a model ('tiny', a folder, a cached hub id)")
    data: str | None = Field(None, description="JSONL rows to evaluate on (image paths + prompt/response or messages); None: the tune run's held-out dev.jsonl")
    base: str | None = Field(None, description="the model to compare against; None: a run's own base model (its adapter off), nothing for a model")
    max_new_tokens: int = Field(16, ge=1, description="tokens per answer (short answers: a word or two)")
    max_rows: int | None = Field(None, ge=1, description="evaluate the first N rows only")
    show: int = Field(8, ge=0, description="rows shown side by side (image, question, answers) in the HTML report")
    device: str = Field("auto", description="auto (the GPU if there is one), cuda, cpu")


class ExportConfig(BaseModel):
    """`onecard vlm export RUN`: what to write, and where."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(description="the vlm tune run (id, id prefix, run folder, or 'last')")
    merge: bool = Field(False, description="write the merged weights (transformers folder: the base model with the adapter folded in, and its processor)")
    gguf: str | None = Field(None, description=f"also write model-TYPE.gguf + mmproj-TYPE.gguf with llama.cpp's converter, TYPE one of {', '.join(GGUF_TYPES)}; None: no GGUF")
    llama_cpp: str | None = Field(None, description="llama.cpp folder that holds convert_hf_to_gguf.py; None: $LLAMA_CPP_DIR or PATH")
    out: str | None = Field(None, description="folder to write into; None: the run's export/ folder")

"""Configs of `onecard tinylm`: train (with presets), sample, eval, bench."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["TinyLMConfig", "SampleConfig", "EvalConfig", "BenchConfig", "PRESETS", "MODEL_KEYS"]

# Sizes and budgets; a preset fills the keys the file and the flags leave out (defaults < preset < file < flags).
PRESETS: dict[str, dict[str, Any]] = {
    # Trains in seconds on a 2-core CPU: for tests and a first look.
    "tiny": dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=8, max_iters=100, learning_rate=3e-3, min_lr=3e-4, warmup_iters=10, eval_interval=50, eval_windows=20, log_interval=10),
    # nanoGPT's README CPU run: train_shakespeare_char.py with --block_size=64 --batch_size=12 --n_layer=4 --n_head=4
    # --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0 (0.80 M parameters; val loss 1.88 there).
    "nanogpt-cpu": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, dropout=0.0, max_iters=2000, learning_rate=1e-3, min_lr=1e-4, warmup_iters=100, beta2=0.99, weight_decay=0.1, eval_interval=250),
    # nanoGPT's config/train_shakespeare_char.py, its "baby GPT" (10.65 M parameters; val loss 1.47 on a GPU).
    "baby": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64, dropout=0.2, max_iters=5000, learning_rate=1e-3, min_lr=1e-4, warmup_iters=100, beta2=0.99, weight_decay=0.1, eval_interval=250),
}

# Keys that shape the model: a resumed run must keep them.
MODEL_KEYS = ("tokenizer", "vocab_size", "pos", "n_layer", "n_head", "n_embd", "block_size", "bias")


class TinyLMConfig(BaseModel):
    """`onecard tinylm train`: a small Transformer language model trained from scratch on a text corpus.

    Without a preset: nanoGPT's CPU model and budget with RoPE and a 3x higher learning rate (val loss 1.72 on
    TinyShakespeare against 1.91 for nanoGPT's configuration on the same protocol, in about 1.5 minutes on 2 CPU
    cores; benchmarks/RESULTS.md).
    """

    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="text file, or folder read with --glob")
    glob: str = Field("**/*.txt", description="files to read when --data is a folder, e.g. '**/*.py'")
    tokenizer: Literal["char", "bpe"] = Field("char", description="char: one token per character; bpe: byte-level BPE trained on the corpus")
    vocab_size: int = Field(4096, ge=257, le=65535, description="BPE vocabulary size (bpe only)")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="fraction of the tokens, at the end of the corpus, held out for validation")
    preset: Literal["tiny", "nanogpt-cpu", "baby"] | None = Field(None, description="model size and training budget; keys given in the file or as flags win")

    pos: Literal["learned", "rope", "alibi"] = Field("rope", description="position scheme: learned embeddings (GPT-2), rotary (RoPE) or linear attention biases (ALiBi)")
    n_layer: int = Field(4, ge=1, description="Transformer blocks")
    n_head: int = Field(4, ge=1, description="attention heads per block")
    n_embd: int = Field(128, ge=8, description="model width (channels); a multiple of 2 * n_head")
    block_size: int = Field(64, ge=2, description="context length in tokens")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout probability (0 for small models and short runs)")
    bias: bool = Field(False, description="biases in Linear and LayerNorm layers")

    batch_size: int = Field(12, ge=1, description="sequences per micro-batch")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step (the effective batch is batch_size * grad_accum)")
    max_iters: int = Field(2000, ge=1, description="optimizer steps in total")
    learning_rate: float = Field(3e-3, gt=0, description="peak learning rate, reached after the warm-up")
    min_lr: float = Field(3e-4, ge=0, description="learning rate at the end of the cosine decay")
    warmup_iters: int = Field(100, ge=0, description="steps of linear warm-up")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay, on matrices only (not on norms, biases)")
    beta1: float = Field(0.9, gt=0, lt=1, description="AdamW beta1")
    beta2: float = Field(0.99, gt=0, lt=1, description="AdamW beta2 (0.99: few tokens per step)")
    grad_clip: float = Field(1.0, ge=0, description="clip the gradient norm to this (0: no clipping)")

    eval_interval: int = Field(250, ge=1, description="evaluate on the validation split and save a checkpoint every N steps")
    eval_windows: int = Field(200, ge=1, description="context windows, evenly spaced over the validation split, in each periodic evaluation; the final one reads the whole split")
    log_interval: int = Field(10, ge=1, description="log the training loss, tokens/s and MFU every N steps")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description="compute precision; auto: bfloat16 autocast where the device runs it natively, else float32")
    compile: bool = Field(False, description="torch.compile the model (slow to start; pays off on long GPU runs)")
    device: str = Field("auto", description="auto (the GPU if there is one), cuda, cuda:1, mps, cpu")
    seed: int = Field(1337, description="random seed for the initial weights and the batch order")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") in PRESETS:
            return {**PRESETS[data["preset"]], **data}
        return data

    @model_validator(mode="after")
    def _check_heads(self) -> TinyLMConfig:
        if self.n_embd % (2 * self.n_head):
            raise ValueError(f"n_embd {self.n_embd} must be a multiple of 2 * n_head ({2 * self.n_head}): each head splits its channels into RoPE pairs")
        return self


class SampleConfig(BaseModel):
    """`onecard tinylm sample RUN`: generate text from a trained model."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(description="run id, unique prefix, run directory, or 'last'")
    prompt: str = Field("\n", description="text to continue")
    max_new_tokens: int = Field(500, ge=1, description="tokens to generate per sample")
    temperature: float = Field(0.8, ge=0, description="softmax temperature; 0 picks the most likely token")
    top_k: int | None = Field(200, ge=1, description="sample among the k most likely tokens (None: all)")
    num_samples: int = Field(1, ge=1, description="independent samples")
    seed: int = Field(1337, description="random seed of the sampling")
    cache: bool = Field(True, description="use the KV cache (same text, faster)")
    device: str = Field("auto", description="auto, cuda, mps, cpu")


class EvalConfig(BaseModel):
    """`onecard tinylm eval RUN`: loss, perplexity and bits per character on text."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(description="run id, unique prefix, run directory, or 'last'")
    data: str | None = Field(None, description="text file or folder to evaluate on (None: the run's validation split)")
    glob: str = Field("**/*.txt", description="files to read when --data is a folder")
    device: str = Field("auto", description="auto, cuda, mps, cpu")


class BenchConfig(BaseModel):
    """`onecard tinylm bench RUN`: training and generation throughput, MFU, and the KV cache's speedup."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(description="run id, unique prefix, run directory, or 'last'")
    train_steps: int = Field(20, ge=1, description="training steps to time (after 3 warm-up steps); the run's weights are not changed")
    new_tokens: int = Field(512, ge=1, description="tokens to generate, with and without the KV cache")
    device: str = Field("auto", description="auto, cuda, mps, cpu")

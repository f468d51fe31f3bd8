"""The knobs of a job whose memory `fit` predicts: one pydantic model, shared by the CLI, YAML and the web API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["FitJob", "Job", "Method", "Runtime", "Optimizer", "Attention", "Offload", "Stack", "Loss", "AdapterDtype",
           "release"]

Job = Literal["infer", "train"]
Method = Literal["full", "lora", "qlora"]
Runtime = Literal[
    "auto", "transformers", "autoawq", "llama.cpp", "vllm", "ollama", "diffusers", "ultralytics", "openai-whisper",
    "faster-whisper"
]
Optimizer = Literal["auto", "adamw", "adamw8bit", "paged_adamw8bit", "paged_adamw", "adafactor", "sgd"]
Attention = Literal["sdpa", "flash", "eager", "xformers", "slicing"]
Offload = Literal["none", "model", "sequential"]
Stack = Literal["transformers", "trl", "onecard", "torchtune", "unsloth", "litgpt", "axolotl"]
Loss = Literal["auto", "standard", "chunked", "tiled", "fused"]
AdapterDtype = Literal["auto", "fp32", "bf16"]

# Upper bounds far past any real job, so that a wild request (a web form, a fuzzer) is a clear validation error
# rather than a planner that searches for minutes.
MAX_COUNT = 1 << 20  # batch, accumulation, LoRA rank, beam
MAX_TOKENS = 1 << 24  # context, sequence, new tokens
MAX_PIXELS = 1 << 14  # image side


class FitJob(BaseModel):
    """A job to fit on a card. "auto" fields are chosen by the planner and reported among the assumptions."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str = Field(description="catalog name (llama-3.1-8b, sdxl, yolov8s, whisper-large-v3), config.json, model folder, .gguf/.safetensors file, or cached hub id")
    job: Job = Field("infer", description="infer (generate, sample, transcribe, predict) or train")
    method: Method = Field("qlora", description="training method for LLM/VLM: full, lora or qlora")
    quant: str = Field("auto", description="weight format: fp32 fp16 bf16 int8 nf4 fp4 gptq awq, or a GGUF type (q4_k_m, q8_0...); auto: bf16, nf4 for qlora, the file's own for GGUF")
    runtime: Runtime = Field("auto", description="runtime that holds the model (autoawq: AutoAWQ's from_quantized(fuse_layers=True) fused modules); auto: picked from the model family and file")
    transformers_version: str | None = Field(None, pattern=r"^\d+\.\d+(\.\d+)?$", description="transformers release the LLM runs on (4.38.2), for its memory changes: before 4.42 generate keeps the KV cache as tuples (each decode step copies it), before 4.45 it computes the logits of every prompt position (Falcon before 4.47, GPTBigCode before 5.0), before 4.46 in fp32; unset: 5.0 or later")
    bitsandbytes_version: str | None = Field(None, pattern=r"^\d+\.\d+(\.\d+)?$", description="bitsandbytes release under a 4-bit QLoRA (0.42.0), for its memory changes: before 0.43.2 MatMul4Bit keeps its input in ctx.tensors for as long as the graph lives, and LitGPT's loop keeps the previous micro-batch's graph through the next forward; unset: 0.43.2 or later")
    torchao_version: str | None = Field(None, pattern=r"^\d+\.\d+(\.\d+)?$", description="torchao release under torchtune's NF4 QLoRA (0.1), for its load: before 0.2 each base weight is converted to NF4 whole (an (N x 16) table of distances per weight), which leaves the allocator's cache holding several GiB after the model loads; unset: 0.2 or later (converted in chunks)")
    autoawq_version: str | None = Field(None, pattern=r"^\d+\.\d+(\.\d+)?(\.post\d+)?$", description="AutoAWQ release under --runtime autoawq (0.2.6, 0.2.7.post2), for its fused attention: through 0.2.6 eager with an fp32 softmax (the T x T scores), 0.2.7-0.2.7.post2 PyTorch SDPA for Llama-like blocks (Falcon, Phi-3, Gemma 2 stay eager), from 0.2.7.post3 FlashAttention-2 for every block; unset: 0.2.7.post3 or later")
    trl_version: str | None = Field(None, pattern=r"^\d+\.\d+(\.\d+)?$", description="TRL release an SFTTrainer run (--stack trl / onecard) trains on (1.7.1), for its loss: before 1.4 the model's own loss on full logits, 1.4-1.14 `chunked_nll` (256 labelled tokens at a time, each chunk checkpointed; before 1.13 with an fp32 copy of the LM head), since 1.15 the fused LM head; unset: with --stack onecard the installed TRL (what `onecard tune` runs here), else 1.15 or later")
    batch: int = Field(1, ge=1, le=MAX_COUNT, description="sequences (or images, or audio segments) processed at once; the micro-batch when training")
    grad_accum: int = Field(1, ge=1, le=MAX_COUNT, description="gradient accumulation steps (does not change peak memory, keeps the effective batch)")
    ctx: int = Field(4096, ge=1, le=MAX_TOKENS, description="inference context length in tokens (prompt + new tokens) that the KV cache holds")
    new_tokens: int = Field(256, ge=0, le=MAX_TOKENS, description="tokens generated per sequence")
    seq: int = Field(2048, ge=1, le=MAX_TOKENS, description="training sequence length in tokens")
    lora_rank: int = Field(16, ge=1, le=MAX_COUNT, description="LoRA rank r")
    lora_targets: str = Field("all-linear", description="LoRA target modules: all-linear, attn (q,k,v,o), qv, or a comma list of module names")
    train_projector: bool = Field(False, description="VLM training: the projector (image features -> the LLM's embeddings) also trains, in full: PEFT's modules_to_save copy in the adapters' dtype, its gradients, optimizer states and saved activations")
    lora_dropout: float | None = Field(None, ge=0, lt=1, allow_inf_nan=False, description="dropout on each LoRA adapter's input (any p > 0 keeps a 1-byte mask per input element); unset: the stack's")
    optimizer: Optimizer = Field("auto", description="optimizer; auto: adamw for full/lora, paged_adamw8bit for qlora")
    grad_ckpt: bool = Field(True, description="gradient (activation) checkpointing")
    stack: Stack = Field("transformers", description="LLM training library whose defaults fill loss, adapter_dtype, lora_dropout, optimizer_in_backward and activation_offload (see onecard.fit.stacks): transformers (Trainer + PEFT; LLaMA-Factory too), trl (SFTTrainer's fused LM head), onecard (what `onecard tune` runs: trl with lora_dropout 0.05), torchtune, unsloth, litgpt, axolotl; for inference, litgpt is LitGPT's generate (its own untied head, quantized with the blocks under bitsandbytes)")
    loss: Loss = Field("auto", description="LLM training loss: standard (full logits upcast to fp32), chunked (16-bit logits, one chunk upcast at a time: torchtune, litgpt), tiled (TRL SFTTrainer's fused LM head: one 16-bit tile of logits at a time, labelled tokens only), fused (no full logits: Liger, unsloth); auto: the stack's")
    adapter_dtype: AdapterDtype = Field("auto", description="LoRA adapter dtype: fp32 (PEFT) or bf16 (torchtune, litgpt; 16-bit either way); auto: the stack's")
    optimizer_in_backward: bool | None = Field(None, description="step and free each gradient inside backward (torchtune optimizer_in_bwd; needs grad_accum 1); unset: the stack's")
    activation_offload: bool | None = Field(None, description="keep saved activations (the checkpointed block inputs) in host RAM (torchtune enable_activation_offloading, unsloth gradient checkpointing); unset: the stack's")
    kbit_prep: bool | None = Field(None, description="PEFT's prepare_model_for_kbit_training on a 4/8-bit base (the classic QLoRA recipe; axolotl calls it): every 16-bit parameter outside the quantized linears (embeddings, head, norms) is cast to fp32, so the residual stream and each checkpointed block input run in fp32; unset: the stack's")
    holds_output: bool = Field(False, description="the training loop keeps the model's output, its full logits, until backward ends (a hand-written loop: `out = model(...); out.loss.backward()`); transformers' Trainer and TRL drop it before backward, torchtune deletes its logits; with the standard loss only")
    attention: Attention = Field("sdpa", description="attention kernel: sdpa, flash, eager (materialises the T x T scores), xformers (for an LLM: a memory-efficient kernel, xformers' or SDPA pinned to EFFICIENT_ATTENTION, grouped k and v expanded to every query head before it), slicing")
    kv_dtype: str = Field("f16", description="KV cache dtype: f16, bf16, f32, fp8 (vLLM), q8_0, q4_0 (llama.cpp, Ollama); fp16 / float16, fp32, bfloat16 are read as f16, f32, bf16")
    gpu_layers: int | None = Field(None, ge=0, description="llama.cpp layers on the GPU; None: as many as fit")
    max_num_batched_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS, description="vLLM: tokens one forward step takes, which its profiling run sizes the activations by (--max-num-batched-tokens); unset: 2048, the V1 engine's `vllm serve` default (the V0 engine, vLLM < 0.8, took max(ctx, 2048) without chunked prefill)")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, allow_inf_nan=False, description="vLLM: fraction of the card it reserves")
    resolution: int | None = Field(None, ge=64, le=MAX_PIXELS, description="diffusion image side in pixels; None: the model's native size")
    offload: Offload = Field("none", description="diffusion CPU offload: none, model, or sequential")
    vae_slicing: bool = Field(False, description="diffusion: decode the batch one image at a time")
    vae_tiling: bool = Field(False, description="diffusion: decode in tiles")
    cached_latents: bool = Field(False, description="diffusion training: latents precomputed, VAE not on the GPU")
    imgsz: int = Field(640, ge=32, le=MAX_PIXELS, description="YOLO image size")
    labels_per_image: float = Field(7.3, ge=0, le=MAX_COUNT, allow_inf_nan=False, description="YOLO training: labels (boxes) in one training image, on average; the segmentation loss builds a mask per label at H/4 x W/4 for each of its positive anchors; default 7.3: COCO train2017, 860,001 boxes over 118,287 images; `onecard detect` passes its data's own figure")
    max_labels: int | None = Field(None, ge=0, le=MAX_COUNT, description="YOLO training: the most labels in one training image after mosaic (which joins four images); ultralytics' target assignment pads every image of the batch to it; unset: 4 x labels_per_image (four average images; crowded images hold more); `onecard detect` passes the sum of its data's four most-labelled images")
    ultralytics_version: str | None = Field(None, pattern=r"^\d+\.\d+(\.\d+)?$", description="ultralytics release the YOLO job trains on (8.0.114), for its target assignment's memory: before 8.0.52 dense (batch x labels x anchors) CIoU and one-hot tensors, before 8.4.134 per-pair CIoU with dense masks, since then sparse pairs; unset: 8.4.134 or later")
    yolo_loss: bool = Field(True, description="YOLO training: the step computes the training loss (target assignment, box and class terms, masks); False: a forward and backward pass without it, as ultralytics' AutoBatch profile measures")
    yolo_val: bool = Field(True, description="YOLO training: the trainer's validation pass after each epoch (the EMA model at twice the batch, NMS, masks) counts; the allocator keeps the memory it reserves, so every reading after the first epoch holds it; False: the training step alone, as the first epoch's readings before its validation or AutoBatch's profile")
    amp: bool = Field(True, description="mixed precision (YOLO, diffusion training)")
    beam: int = Field(5, ge=1, le=MAX_COUNT, description="Whisper beam size")
    ctranslate2_version: str | None = Field(None, pattern=r"^\d+\.\d+(\.\d+)?$", description="faster-whisper: the CTranslate2 release under it (3.5.1), for its beam search: before 3.6.0 every beam held its own copy of the cross-attention keys and values; unset: 3.6.0 or later")
    cuda_module_loading: Literal["lazy", "eager"] = Field("lazy", description="how the process's CUDA context loads kernels: lazy, on first use (onecard sets CUDA_MODULE_LOADING=LAZY, CUDA 12.2+ on Linux does by default, PyTorch 1.13+ sets it at its first CUDA operation); eager, every kernel of every loaded CUDA library when the context is made: a CUDA runtime before 11.7, or a driver before 12.2 (R535) initialised before PyTorch's first CUDA operation (torch.cuda.is_available() runs cuInit, and so does a library that calls it on import or load: bitsandbytes, transformers' GPTQ/AWQ checks) with CUDA_MODULE_LOADING unset")
    gpu: str | None = Field(None, description="card from the catalog (4070ti, rtx-3060, a100-80gb); None: the detected card")
    vram: float | None = Field(None, gt=0, le=100_000, allow_inf_nan=False, description="card memory in GiB, instead of --gpu")
    margin_gib: float = Field(0.5, ge=0, allow_inf_nan=False, description="safety margin kept free when deciding what fits")
    strict: bool = Field(False, description="decide fits on the first-sight bound: how far the planner missed jobs from sources it had never seen (each held-out split's first scoring, every job kind pooled), for a harness unlike the stacks it models; default: its job kind's bound, fitted on the cases it models")
    calibration: bool = Field(True, description="scale the estimate by this machine's correction for the card and job kind, if `onecard fit calibrate` made one; --no-calibration plans without it")

    @field_validator("kv_dtype")
    @classmethod
    def _kv_name(cls, value: str) -> str:
        """One spelling per cache type (llama.cpp's): fp16 / float16 are f16, fp32 / float32 f32, bfloat16 bf16."""
        name = value.strip().lower()
        return KV_SPELLINGS.get(name, name)


KV_SPELLINGS = {"fp16": "f16", "float16": "f16", "half": "f16", "fp32": "f32", "float32": "f32", "float": "f32",
                "bfloat16": "bf16"}


def release(version: str | None, current: tuple[int, int, int]) -> tuple[int, int, int]:
    """A job's release field ("4.38.2", "8.0") as (major, minor, patch); unset: `current`, the newest behaviour the
    planner knows."""
    if version is None:
        return current
    major, minor, patch = [*map(int, version.split(".")), 0][:3]
    return major, minor, patch

"""LLM/VLM training memory (full, LoRA, QLoRA) for the transformers + PEFT stack.

Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models",
section 4: count the tensors each op saves for backward; sbh(34 + 5as/h) for a GPT layer) adapted to
Llama-style blocks and to what autograd really keeps when the base weights are frozen:
- a frozen 16-bit linear saves nothing (its input is only needed for the weight gradient); a bitsandbytes 4/8-bit
  linear saves its input anyway (bnb's MatMul4Bit keeps `A`); a trainable one saves its input;
- PEFT LoRA adapters are fp32 (autocast_adapter_dtype) and each casts its input under autocast: one 16-bit copy of
  the input per adapted module;
- RMSNorm upcasts to fp32 and keeps that copy (4 B per element); LayerNorm keeps its input;
- SDPA/flash attention keeps q, k, v, the output and the log-sum-exp (no T x T matrix); eager keeps q, k, v, the
  fp32 softmax and its 16-bit cast (T x T per head);
- the gated MLP keeps the gate (for SiLU/GELU), the activation and up (for the product), and the product when the
  down projection needs it.
This per-op count was checked against torch.autograd.graph.saved_tensors_hooks on a tiny transformers Llama with
PEFT LoRA (transformers 5, torch 2.13, CPU): SDPA and eager, LoRA and full, to the byte.
With gradient checkpointing only each block's input stays (2 B x hidden per token), and one block is recomputed
during backward. The loss is the first-order term for 128k+ vocabularies: transformers' ForCausalLMLoss upcasts
the logits to fp32 and F.cross_entropy keeps the fp32 log-softmax (forward: 16-bit logits + fp32 + log-softmax,
10 B per logit); its backward then holds the saved log-softmax, its gradient and the input gradient, 3 x 4 B = 12 B
per logit (batch x seq x vocab). The fake-tensor trace (`onecard fit --trace`, Llama-3.1-8B LoRA, seq 1024, with
checkpointing) peaks exactly there: 1.73 GiB of activations against 1.72 GiB from these terms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from onecard.core.errors import ConfigError
from onecard.fit.catalog import Linear, LlmArch, linears, n_params
from onecard.fit.estimate import Estimate
from onecard.fit.job import FitJob
from onecard.fit.llm import (
    ALLOC_SLACK,
    CUDA_CONTEXT_GIB,
    WeightFormat,
    context_note,
    gib,
    parse_quant,
    slack_note,
    weight_bytes,
)

if TYPE_CHECKING:
    from onecard.core.gpus import GpuSpec

__all__ = ["estimate", "lora_targets", "layer_saved_bytes", "trainable_params"]

MFU = {"full": 0.4, "lora": 0.4, "qlora": 0.3}  # assumed model FLOPs utilisation of the transformers/PEFT stack
_TARGETS = {"all-linear": None, "attn": {"q", "k", "v", "qkv", "o"}, "qv": {"q", "v", "qkv"}}


def lora_targets(arch: LlmArch, targets: str) -> list[Linear]:
    """The block linears LoRA adapts: all-linear (PEFT's, lm_head excluded), attn, qv, or module names.

    Raises:
        ConfigError: a module name the architecture does not have.
    """
    lins = linears(arch)
    key = targets.strip().lower()
    if key in _TARGETS:
        kinds = _TARGETS[key]
        return [lin for lin in lins if kinds is None or lin.kind in kinds]
    wanted = {t.strip().removesuffix("_proj") for t in key.split(",") if t.strip()}
    chosen = [lin for lin in lins if lin.kind in wanted or lin.name.removesuffix("_proj") in wanted]
    unknown = wanted - {lin.kind for lin in chosen} - {lin.name.removesuffix("_proj") for lin in chosen}
    if unknown:
        raise ConfigError(f"--lora-targets names modules {sorted(unknown)} that {arch.name} does not have",
                          f"use all-linear, attn, qv or some of {', '.join(lin.name for lin in lins)}")
    return chosen


def trainable_params(arch: LlmArch, job: FitJob) -> int:
    """Trainable parameters: the whole LLM for full fine-tuning, else r x (d_in + d_out) per adapted module."""
    if job.method == "full":
        return n_params(arch, with_vision=False)
    return arch.n_layers * sum(job.lora_rank * (lin.d_in + lin.d_out) for lin in lora_targets(arch, job.lora_targets))


def layer_saved_bytes(arch: LlmArch, a: int, full: bool, frozen_saves: bool, adapted: list[Linear], attention: str,
                      seq: int, rank: int = 16) -> float:
    """Bytes one block keeps for backward, per token (see the module docstring for what each op keeps)."""
    h, q, kv, f = arch.hidden, arch.q_dim, arch.kv_dim, arch.intermediate
    size = {"attn_in": h, "attn_out": q, "mlp_in": h, "mlp_act": f}
    norm = (4 * h if arch.norm == "rms" else a * h) + (a * h if full else 0)  # + the normed input for weight grads
    total = arch.norms_per_layer * norm + (4 * (q + kv) if arch.qk_norm else 0)
    saved = {lin.reads for lin in linears(arch)} if full or frozen_saves else set()
    total += a * sum(size[slot] for slot in saved - {"attn_out", "mlp_act"})
    if attention == "eager":  # q, k and v repeated to every head, fp32 softmax + its cast, transposed output copy
        total += 3 * a * q + (4 + (a if a != 4 else 0)) * arch.n_heads * seq + (a * q if "attn_out" in saved else 0)
    else:  # q, k, v, output (which the o_proj input shares) and the fp32 log-sum-exp per head
        total += a * (2 * q + 2 * kv) + 4 * arch.n_heads
    total += (3 if arch.gated_mlp else 1) * a * f + (a * f if "mlp_act" in saved else 0)
    total += sum(a * (lin.d_in + rank) for lin in adapted)  # each adapter's 16-bit input copy and its x @ A
    return float(total)


def _optimizer(job: FitJob) -> str:
    if job.optimizer != "auto":
        return job.optimizer
    return "paged_adamw8bit" if job.method == "qlora" else "adamw"


def _state_bytes(opt: str, params: int, param_bytes: int, arch: LlmArch, job: FitJob) -> float:
    """Optimizer state bytes: AdamW two moments in the parameter dtype, 8-bit AdamW 2 B/param, Adafactor's
    factored second moment (rows + columns per matrix), SGD none."""
    if opt in ("adamw", "paged_adamw"):
        return 2.0 * params * param_bytes
    if opt in ("adamw8bit", "paged_adamw8bit"):
        return 2.0 * params
    if opt == "adafactor":
        if job.method == "full":
            mats = [lin.d_in + lin.d_out for lin in linears(arch)] * arch.n_layers + [arch.vocab + arch.hidden] * 2
        else:
            mats = [job.lora_rank * 2 + lin.d_in + lin.d_out for lin in lora_targets(arch, job.lora_targets)]
            mats *= arch.n_layers
        return 4.0 * sum(mats)
    return 0.0


def _check(job: FitJob, fmt: WeightFormat) -> None:
    if fmt.kind == "gguf":
        raise ConfigError(f"{fmt.name} is a GGUF inference format; training runs on transformers weights",
                          "train from the safetensors model (--quant bf16 or nf4), then export to GGUF")
    if job.method == "full" and (fmt.quantized or fmt.name == "fp8"):
        raise ConfigError(f"full fine-tuning updates every weight; --quant {job.quant} weights cannot be trained",
                          "use --method qlora for a 4-bit base with LoRA adapters, or --quant bf16")
    if job.method == "qlora" and not fmt.quantized:
        raise ConfigError(f"--method qlora trains LoRA on a quantized base, but --quant is {job.quant}",
                          "use --method lora for a 16-bit base, or --quant nf4")


def estimate(arch: LlmArch, job: FitJob, card: GpuSpec | None) -> Estimate:
    """Peak memory of one training step (forward, backward, optimizer step) with the job's settings.

    Raises:
        ConfigError: a method/format combination that cannot train (full fine-tuning of 4-bit weights, GGUF).
    """
    fmt = parse_quant(arch, job, card, "transformers")
    _check(job, fmt)
    full = job.method == "full"
    amp = full and fmt.name == "fp16"  # fp16 needs fp32 master weights (GradScaler); bf16 trains pure bf16
    a = fmt.act_bytes
    wb = weight_bytes(arch, WeightFormat("dense", "fp32", 4, 4) if amp else fmt)
    img = arch.vision.image_tokens if arch.vision else 0
    seq = job.seq + img
    tokens = job.batch * seq
    L, h, V = arch.n_layers, arch.hidden, arch.vocab
    params = trainable_params(arch, job)
    param_bytes = fmt.weight_bytes if full and not amp else 4  # PEFT adapters are fp32; AMP masters are fp32
    opt = _optimizer(job)
    states = _state_bytes(opt, params, param_bytes, arch, job)
    paged = opt.startswith("paged")
    adapted = [] if full else lora_targets(arch, job.lora_targets)
    per_layer = layer_saved_bytes(arch, a, full, fmt.quantized, adapted, job.attention, seq, job.lora_rank) * tokens
    ckpt_in = a * h * tokens
    casts = 0.0 if full else 2.0 * params  # autocast's 16-bit copies of the fp32 adapters, kept for backward
    stack = L * ckpt_in if job.grad_ckpt else L * per_layer + casts
    grad_tmp = (3 * a * arch.intermediate + 2 * a * h) * tokens + (per_layer if job.grad_ckpt else 0)
    final = (4 * h + (a * h if full else 0)) * tokens
    logits = tokens * V * 12.0  # cross-entropy backward: saved fp32 log-softmax + its grad + the input grad
    lin_params = L * sum(lin.d_in * lin.d_out for lin in linears(arch))
    g_layer = (lin_params / L) * param_bytes if full else 0.0
    g_head = (params - lin_params) * param_bytes if full else params * param_bytes  # LoRA: all grads at once
    # the larger of: the loss at the end of forward; backward after k blocks (their activations freed, their
    # gradients made); the optimizer step (torch AdamW foreach keeps one temporary the size of a moment)
    step_tmp = params * param_bytes if opt in ("adamw", "paged_adamw") else 0.0
    phases = {"loss": {"activations": stack + final, "logits": logits}}
    best_k = max(range(L + 1), key=lambda k: (stack * (L - k) / L if L else 0) + k * g_layer)
    phases["backward"] = {"activations": stack * (L - best_k) / L + grad_tmp, "gradients": g_head + best_k * g_layer}
    phases["optimizer step"] = {"gradients": g_head + L * g_layer, "runtime": step_tmp}
    phase, work = max(phases.items(), key=lambda kv: sum(kv[1].values()))
    adapters = 0.0 if full else params * param_bytes
    parts = {"weights": wb.total, "adapters": adapters, "optimizer": 0.0 if paged else states, **work}
    # fp16 AMP: autocast caches a 16-bit copy of every weight for the step (torch.autocast weight cast cache)
    parts["runtime"] = parts.get("runtime", 0.0) + wb.dequant + (2.0 * params if amp else 0.0)
    transient = sum(v for k, v in parts.items() if k in ("activations", "logits", "runtime", "gradients"))
    notes = [_method_note(job, fmt, params, arch), f"micro-batch {job.batch} x sequence {job.seq}"
             + (f" (+{img} image tokens)" if img else "") + f", gradient accumulation {job.grad_accum} "
             "(does not change the peak)",
             f"gradient checkpointing {'on' if job.grad_ckpt else 'off'}, attention {job.attention}",
             f"optimizer {opt}: {gib(states):.2f} GiB of states"
             + (" in CUDA unified memory (paged: spills to host RAM, not counted in the peak)" if paged else ""),
             f"loss backward holds {gib(logits):.2f} GiB of fp32 logit tensors (log-softmax, its grad, the input grad; "
             f"vocab {V}); a fused/chunked cross-entropy (Liger, torchtune) would not",
             f"peak during the {phase}"]
    if wb.dequant:
        notes.append(f"4-bit matmuls dequantize one weight at a time: {gib(wb.dequant):.2f} GiB buffer")
    est = Estimate({k: gib(v) for k, v in parts.items()}, slack_gib=gib(ALLOC_SLACK * transient),
                   context_gib=CUDA_CONTEXT_GIB, cpu_gib=gib(states) if paged else 0.0,
                   assumptions=[*notes, slack_note(), context_note()])
    _step_time(est, arch, job, card, tokens, a)
    return est


def _method_note(job: FitJob, fmt: WeightFormat, params: int, arch: LlmArch) -> str:
    if job.method == "full":
        dtype = "fp32 master weights + fp16 autocast" if fmt.name == "fp16" else f"pure {fmt.name}"
        return f"full fine-tuning, {dtype}: {params / 1e9:.2f}B trainable parameters"
    base = f"{fmt.name} base" if fmt.quantized else f"frozen {fmt.name} base"
    return (f"{'QLoRA' if fmt.quantized else 'LoRA'} on {job.lora_targets}, r={job.lora_rank} "
            f"({params / 1e6:.1f}M fp32 adapter parameters, PEFT default) under bf16/fp16 autocast (Trainer bf16=True: "
            f"each adapter keeps a 16-bit copy of its input), {base}, lora_dropout 0")


def _step_time(est: Estimate, arch: LlmArch, job: FitJob, card: GpuSpec | None, tokens: int, a: int) -> None:
    """FLOPs per token: 2N forward, 4N backward for full (2N for LoRA: no weight gradients), +2N recompute."""
    tflops = 0.0 if card is None else (card.bf16_tflops if card.bf16 and a == 2 else card.fp16_tflops / (a // 2))
    if tflops <= 0:
        est.throughput_note = "no TFLOPS figure for this card: step time not estimated"
        return
    n = n_params(arch, with_vision=False) - arch.vocab * arch.hidden  # the input embedding is a lookup
    mult = (6 if job.method == "full" else 4) + (2 if job.grad_ckpt else 0)
    mfu = MFU[job.method]
    est.step_s = mult * n * tokens / (tflops * 1e12 * mfu)
    est.throughput_note = (f"{mult}N FLOPs per token ({'full' if job.method == 'full' else 'no weight gradients'}"
                           f"{', recompute' if job.grad_ckpt else ''}) at {mfu:.0%} of {tflops:g} TFLOPS")

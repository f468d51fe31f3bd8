"""LLM/VLM training memory (full, LoRA, QLoRA) for the transformers + PEFT stack, and the mechanisms other stacks
(torchtune, unsloth, litgpt, axolotl; `onecard.fit.stacks`) swap in: a chunked or fused loss, 16-bit adapters,
optimizer-in-backward, activation offloading.

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

What the other stacks change, each from how its code works:
- chunked loss (torchtune CEWithChunkedOutputLoss, litgpt chunked_cross_entropy): the output projection runs per
  chunk of tokens and keeps 16-bit logits (a B per logit, all of them: each chunk's loss keeps its input for
  backward) and one chunk at a time is upcast to fp32 (torchtune's class docstring: "upcasting only one chunk at a
  time"). torchtune gets there with compute_cross_entropy under torch.compile, as in its README figures: the compiled
  loss saves its 16-bit input and per-row statistics, not the fp32 log-softmax. Run eagerly it keeps every chunk's
  fp32 log-softmax (4 B per logit more); litgpt's bf16 loss keeps a 16-bit log-softmax (2 B more). Not modelled.
- fused loss (Liger LigerFusedLinearCrossEntropyFunction, also TRL use_liger_kernel; unsloth's fused CE): no full
  logits. Liger's forward walks chunks of BT / ceil(V / H) tokens (logits about the size of the hidden states, in the
  compute dtype, the gradient written in place), computes the input gradient (BT x H, kept for backward) and, when the
  head trains, its weight gradient right there (fused_linear_cross_entropy_forward).
- tiled loss (TRL 1.16 SFTTrainer's fused LM head, `ChunkedLogProbFunction` in trl/kernels/chunked_logprob.py; the
  trl and onecard stacks): the labelled tokens' hidden states are gathered (N x H, saved for backward) and projected
  through one tile buffer of min(N, 4096) tokens x 32768 vocabulary entries in the compute dtype (`mm_buf`, the full
  32768 columns even for a smaller vocabulary), folded into per-token log-sum-exp statistics by a Triton kernel that
  allocates nothing; backward recomputes each tile into the same kind of buffer, accumulates the input gradient in
  fp32 (N x H) and returns it cast to 16 bits, so its peak is the tile + 16-bit saved input + fp32 gradient + its
  16-bit cast. Full fine-tuning also accumulates the head's weight gradient in fp32 (V x H) and casts it. Measured on
  a CPU, bf16, with TRL's own code and its Triton kernels' CPU stand-ins left uncounted (tests/unit/fit/test_stacks.py):
  the formula plus 21-33 B per token (TRL's per-token statistics) from 256 to 8,190 scored tokens (the larger sizes
  one-off runs of the test's counter, hidden 256): 0.129 GiB at 2,047 tokens and a 128k vocabulary, where the
  standard loss measured 2.936 GiB. TRL scores only labelled tokens
  (prompt tokens cost nothing: 0.064 GiB with half of them), but the planner does not know how many a row has: it
  counts every token, a bound. TRL's CPU fallback (no Triton) holds several fp32 copies of each tile instead (1.94 GiB
  there, 0.97 with half scored); fit plans GPUs. Older TRL (`trl_version`, stacks.trl_release): 1.4-1.14's
  `chunked_nll` projects 256 labelled tokens at a time under checkpointing (TRL_NLL_CHUNK; before 1.13 through an fp32
  copy of the head), and before 1.4 SFTTrainer's loss is the model's own (standard).
- LoRA dropout p > 0 (PEFT `lora_A(dropout(x))`, torchtune alike): each adapter's input is its own dropped copy
  (16-bit, the copy fp32 adapters keep anyway) and the dropout keeps a 1-byte mask of it for backward.
- 16-bit adapters (torchtune, litgpt): 2 B weights, gradients and AdamW moments; no autocast, so an adapter reads its
  input as is (saved once per input tensor, shared with whatever else saves it) and no 16-bit weight copies are kept.
- optimizer in backward (torchtune optimizer_in_bwd: one optimizer per parameter stepped by a post-accumulate-grad
  hook, the gradient then freed): at most the largest parameter's gradient exists, and there is no optimizer phase.
- activation offload (torchtune OffloadActivations with streams, unsloth's offloaded checkpointer): the saved
  activations go to host RAM; the GPU holds the block being copied out or prefetched back and the one in use.
- torchtune's QLoRA base is torchao's NF4Tensor, whose LinearNF4 saves only the weight for backward.
- PEFT's prepare_model_for_kbit_training (`kbit_prep`: axolotl, TRL 0.13's SFTTrainer, the classic QLoRA scripts)
  casts the embeddings, head and norms to fp32, and with them the residual stream: checkpointed inputs at 4 B.
- LitGPT under Lightning Fabric: an untied head quantized from an fp16 copy (onecard.fit.formats), k and v expanded
  to every query head for SDPA (or the fused qkv kept whole), and with bitsandbytes before 0.43.2 the previous
  micro-batch's 4-bit inputs held through the next forward by its loop.

A VLM (LLaVA-style: a frozen ViT, a two-layer GELU projector, the LLM) first runs its vision tower with no autograd
state: a transient of the ViT block's working tensors per image token (residual, norm, 4h MLP), its own phase. With
`train_projector` (onecard vlm tune --train-projector: PEFT modules_to_save) the projector trains in full: PEFT keeps a
trainable copy beside the frozen original, in the adapters' dtype (fp32 under PEFT), with its gradients and optimizer
states; under autocast each of its linears keeps a 16-bit copy of its fp32 weight and saves its 16-bit input (the ViT
features, the GELU's input and its output: vision hidden + 2 x hidden per image token) until backward. For
LLaVA-1.5-7B's 21.0M projector parameters with fp32 AdamW that is 16 B each, 0.31 GiB, before the activations.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from onecard.core.errors import ConfigError
from onecard.fit import stacks
from onecard.fit.catalog import Linear, LlmArch, linears, n_params, norm_params
from onecard.fit.estimate import Estimate, gib
from onecard.fit.formats import LIGHTNING_NOTE, WeightFormat, parse_quant, weight_bytes
from onecard.fit.job import FitJob, release
from onecard.fit.llm_infer import MATH_SDPA_BYTES_PER_SCORE, MATH_SDPA_MASK_BYTES, OWN_ATTENTION, math_sdpa
from onecard.fit.overheads import ALLOC_SLACK, CUDA_CONTEXT_GIB, context_note, slack_note

if TYPE_CHECKING:
    from onecard.core.gpus import GpuSpec

__all__ = ["estimate", "lora_targets", "layer_saved_bytes", "trainable_params", "projector_params", "loss_bytes",
           "loss_segments_bytes"]

MFU = {"full": 0.4, "lora": 0.4, "qlora": 0.3}  # assumed model FLOPs utilisation of the transformers/PEFT stack
# TRL 1.16's fused LM head projects into a tile of 4096 tokens (trl/kernels/chunked_logprob.py TOKEN_CHUNK_SIZE) x
# 32768 vocabulary entries (trl/trainer/utils.py _CHUNKED_LOGPROB_CHUNK_SIZE)
TRL_TILE_TOKENS, TRL_TILE_VOCAB = 4096, 32768
# TRL 1.4-1.14's chunked_nll (trl/trainer/sft_trainer.py `_CHUNKED_LM_HEAD_CHUNK_SIZE`), measured on CPU with the
# wheels' own `_chunk` / `_chunked_cross_entropy_loss` and the output dropped before backward as the Trainer's
# compute_loss does (benchmarks/fit_logits_trace.py --trl): a chunk's backward holds, before 1.13, the fp32 copy of
# the head and three fp32 chunks of logits (12 B per chunk token and vocabulary entry), from 1.13 four (16 B: the
# 16-bit product, its fp32 cast, log-softmax and its gradient), beside the hidden states' 16-bit copy and gradients
TRL_NLL_CHUNK = 256
PCIE_GBPS = 25.0  # host <-> GPU copies: PCIe 4.0 x16 moves about 25 GB/s of its 32 GB/s in practice
# the short names, as tune and vlm tune hand them to PEFT (onecard.core.peft_run.LORA_ALIASES)
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
    if not wanted:  # PEFT refuses a LoRA config with no target module
        raise ConfigError(f"--lora-targets {targets!r} names no module", "use all-linear, attn, qv or a comma list of "
                          f"module names ({', '.join(lin.name for lin in lins)})")
    chosen = [lin for lin in lins if lin.kind in wanted or lin.name.removesuffix("_proj") in wanted]
    unknown = wanted - {lin.kind for lin in chosen} - {lin.name.removesuffix("_proj") for lin in chosen}
    if unknown:
        raise ConfigError(f"--lora-targets names modules {sorted(unknown)} that {arch.name} does not have",
                          f"use all-linear, attn, qv or some of {', '.join(lin.name for lin in lins)}")
    return chosen


def projector_params(arch: LlmArch, job: FitJob) -> int:
    """The projector's parameters when `job.train_projector` trains it in full, else 0.

    Raises:
        ConfigError: train_projector on a model with no vision tower.
    """
    if not job.train_projector:
        return 0
    if arch.vision is None:
        raise ConfigError(f"train_projector: {arch.name} has no vision tower or projector to train",
                          "drop --train-projector, or plan a LLaVA-style vision-language model")
    return arch.vision.projector_params


def trainable_params(arch: LlmArch, job: FitJob) -> int:
    """Trainable parameters: the whole LLM for full fine-tuning, else r x (d_in + d_out) per adapted module."""
    if job.method == "full":
        return n_params(arch, with_vision=False)
    return arch.n_layers * sum(job.lora_rank * (lin.d_in + lin.d_out) for lin in lora_targets(arch, job.lora_targets))


def input_widths(arch: LlmArch) -> dict[str, int]:
    """Width of each tensor a block's linears read (`Linear.reads`): attention input and output, MLP input and
    activation."""
    return {"attn_in": arch.hidden, "attn_out": arch.q_dim, "mlp_in": arch.hidden, "mlp_act": arch.intermediate}


def layer_saved_bytes(arch: LlmArch, a: int, full: bool, frozen_saves: bool, adapted: list[Linear], attention: str,
                      seq: int, rank: int = 16, adapter_bytes: int = 4, dropout: bool = False,
                      qkv_one_adapter: bool = False, qkv_zero_pad: bool = False, kv_expanded: bool = False) -> float:
    """Bytes one block keeps for backward, per token (see the module docstring for what each op keeps).

    fp32 adapters (PEFT under autocast) each keep their own 16-bit copy of their input; 16-bit adapters save the
    input tensor itself, once for all the adapters that read it, or with dropout each its own dropped copy. Dropout
    adds a 1-byte mask per adapter input element. `qkv_one_adapter` (LitGPT): the q, k and v adapters drop one shared
    copy of their input. `qkv_zero_pad` (LitGPT): when only some of q, k, v are adapted, LoRAQKVLinear.zero_pad
    scatters their update into the fused qkv width with `index_copy`, whose backward keeps its source (a 16-bit
    value per adapted q/k/v output) for `expand_as(source)`. `kv_expanded` (LitGPT's attention, litgpt/model.py
    CausalSelfAttention.forward): with grouped or multi-query heads k and v are expanded to every query head and
    reshaped into new tensors, which SDPA saves (2 x (q - kv) more per token); with one KV head per query head v is a
    view of the permuted fused qkv output, which then stays alive whole (its q and k parts more).
    """
    h, q, kv, f = arch.hidden, arch.q_dim, arch.kv_dim, arch.intermediate
    size = input_widths(arch)
    norm = (4 * h if arch.norm == "rms" else a * h) + (a * h if full else 0)  # + the normed input for weight grads
    total = arch.norms_per_layer * norm + (4 * (q + kv) if arch.qk_norm else 0)
    saved = {lin.reads for lin in linears(arch)} if full or frozen_saves else set()
    if adapter_bytes == 2 and not dropout:
        saved |= {lin.reads for lin in adapted}
    total += a * sum(size[slot] for slot in saved - {"attn_out", "mlp_act"})
    if attention == "eager":  # q, k and v repeated to every head, fp32 softmax + its cast, transposed output copy
        total += 3 * a * q + (4 + (a if a != 4 else 0)) * arch.n_heads * seq + (a * q if "attn_out" in saved else 0)
    else:  # q, k, v, output (which the o_proj input shares) and the fp32 log-sum-exp per head
        total += a * (2 * q + 2 * kv) + 4 * arch.n_heads
        if kv_expanded:
            total += 2 * a * (q - kv) if q != kv else a * (q + kv)
    total += (3 if arch.gated_mlp else 1) * a * f + (a * f if "mlp_act" in saved else 0)
    copy = adapter_bytes == 4 or dropout  # PEFT casts the input to fp32, autocast casts it back; or dropout's output
    qkv = [lin for lin in adapted if qkv_one_adapter and lin.kind in ("q", "k", "v")]
    inputs = [lin.d_in for lin in adapted if lin not in qkv] + ([qkv[0].d_in] if qkv else [])
    total += sum((a * d if copy else 0) + (d if dropout else 0) for d in inputs) + a * rank * len(adapted)
    if qkv_zero_pad and 0 < len({lin.kind for lin in adapted} & {"q", "k", "v"}) < 3:
        # lit_gpt/lora.py @8641822 LoRAQKVLinear.zero_pad: result.index_copy(1, lora_ind, after_B) (litgpt today:
        # index_copy_); IndexCopyBackward saves source (tools/autograd/derivatives.yaml index_copy: source:
        # grad.index_select(dim, index).expand_as(source)). Checked with saved_tensors_hooks on lit_gpt @8641822
        total += a * sum(lin.d_out for lin in adapted if lin.kind in ("q", "k", "v"))
    return float(total)  # per adapter input: (the input copy and the dropout mask); per adapter: x @ A


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
        if job.train_projector and arch.vision is not None:  # fc1 (vision -> hidden), fc2 and the two biases
            mats += [arch.vision.hidden + arch.hidden, 2 * arch.hidden, 2 * arch.hidden]
        return 4.0 * sum(mats)
    return 0.0


def _check(job: FitJob, fmt: WeightFormat) -> None:
    if fmt.kind == "gguf":
        what = "a GGUF file" if fmt.name == "unknown" else f"{fmt.name} (GGUF)"
        raise ConfigError(f"{job.model} is {what}, an inference format; training runs on transformers weights",
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
    kn = stacks.resolve(job)
    full = job.method == "full"
    amp = full and fmt.name == "fp16"  # fp16 needs fp32 master weights (GradScaler); bf16 trains pure bf16
    a = fmt.act_bytes
    lightning = job.stack == "litgpt"  # LitGPT under Lightning Fabric: formats.weight_bytes(lightning)
    wb = weight_bytes(arch, WeightFormat("dense", "fp32", 4, 4) if amp else fmt, lightning, card is None or card.bf16)
    img = arch.vision.image_tokens if arch.vision else 0
    seq = job.seq + img
    tokens = job.batch * seq
    L, h, V = arch.n_layers, arch.hidden, arch.vocab
    params = trainable_params(arch, job)
    proj = projector_params(arch, job)
    # full: the weights' own width (AMP masters fp32); LoRA: the stack's adapter dtype (PEFT: fp32)
    param_bytes = (4 if amp else fmt.weight_bytes) if full else kn.adapter_bytes
    opt = _optimizer(job)
    states = _state_bytes(opt, params + proj, param_bytes, arch, job)
    paged = opt.startswith("paged")
    adapted = [] if full else lora_targets(arch, job.lora_targets)
    # k and v copied to every query head before the attention kernel: LitGPT's attention, and transformers' attention
    # into a memory-efficient kernel (xformers, or SDPA pinned to it), which takes no grouped heads (unsloth's own
    # xformers path expands them as views: no copies)
    expanded = lightning or (job.attention == "xformers" and arch.kv_dim < arch.q_dim
                             and job.stack not in OWN_ATTENTION)
    # PEFT's prepare_model_for_kbit_training (the stack's or the job's `kbit_prep`): the embeddings, head and norms
    # cast to fp32 (peft/utils/other.py), so the embedding's output, and every residual add after an fp32 norm or a
    # bitsandbytes linear (which casts its output back to its input's dtype), run in fp32: each checkpointed block
    # input is 4 B per element; without checkpointing, what each block keeps for backward is counted at 4 B per element
    # too (traced with the casts emulated, Qwen2.5-1.5B: 155 kB per token and layer against 159 kB from this count,
    # benchmarks/fit_logits_trace.py --kbit). The block recomputed under checkpointing stays at the compute dtype:
    # fms-acceleration's FlashAttention-2 + autocast QLoRA rows (heldout4) read within 5 % so, 6-7 % over at 4 B.
    upcast = kn.kbit_prep and fmt.quantized and not full
    kept_b = 4 if upcast and not job.grad_ckpt else a  # bytes per element of what a block keeps for backward
    per_layer = layer_saved_bytes(arch, kept_b, full, fmt.quantized and kn.quant_saves_input, adapted, job.attention,
                                  seq, job.lora_rank, param_bytes, kn.lora_dropout > 0, kn.qkv_one_adapter,
                                  kn.qkv_one_adapter, expanded) * tokens
    # bitsandbytes before 0.43.2 keeps MatMul4Bit's input in ctx.tensors, outside autograd's saved variables, so it
    # lives as long as the graph (fixed by bitsandbytes PR #1270, "delete useless buffered activation"); LitGPT's
    # loop rebinds `logits = model(...)` only when the next forward returns, so during that forward the previous
    # micro-batch's inputs of every 4-bit linear (and the final norm's output its head chunks read) are still held
    # (litgpt/finetune/lora.py @5895df10:276)
    old_bnb = release(job.bitsandbytes_version, BNB_DROPS_INPUT) < BNB_DROPS_INPUT
    widths = input_widths(arch)
    prev_graph = (tokens * a * (L * sum(widths[s] for s in {lin.reads for lin in linears(arch)}) + h)
                  if lightning and fmt.kind == "bnb4" and old_bnb else 0.0)
    # SDPA's math kernel (llm_infer.math_sdpa: grouped KV heads from transformers 4.54 on a card without flash, or in
    # fp32): a block's attention materialises its (batch, heads, T, T) scores, keeps the fp32 softmax output for
    # backward (4 B per score: _safe_softmax's result, which the product with v saves too) and holds
    # MATH_SDPA_BYTES_PER_SCORE per score, with the causal mask, while its forward or backward runs
    why_math = math_sdpa(arch, job, a, card)
    score_n = job.batch * arch.n_heads * seq * seq if why_math else 0
    per_layer += 4.0 * score_n
    ckpt_in = (4 if upcast else a) * h * tokens
    casts = 2.0 * params if not full and param_bytes == 4 else 0.0  # autocast's 16-bit copies of fp32 adapters
    block = ckpt_in if job.grad_ckpt else per_layer + casts / L  # what one block leaves saved until backward
    on_gpu = min(L, 2) if kn.activation_offload else L  # offloaded: the block in use + the one in flight
    stack = on_gpu * block
    grad_tmp = ((3 * a * arch.intermediate + 2 * a * h) * tokens + (per_layer if job.grad_ckpt else 0)
                + (MATH_SDPA_BYTES_PER_SCORE - 4.0) * score_n + (MATH_SDPA_MASK_BYTES * seq * seq if score_n else 0))
    final = (4 * h + (a * h if full else 0)) * tokens
    images = job.batch * img  # image tokens of the micro-batch
    vision = job.batch * (img + 1) * a * 6 * arch.vision.hidden if arch.vision else 0.0  # ViT working memory
    # a trained projector saves its 16-bit inputs (ViT features, GELU input, GELU output) for backward, and
    # autocast keeps a 16-bit copy of its fp32 weights
    proj_saved = (images * a * (arch.vision.hidden + 2 * h) if arch.vision and proj else 0.0) \
        + (2.0 * proj if param_bytes == 4 else 0.0)
    proj_grads = proj * param_bytes
    trl = stacks.trl_release(job)
    logits = loss_bytes(kn.loss, tokens, V, h, a, kn.fp32_output, trl)
    # a loop that keeps the model's output (`out = model(...)`) holds its logits, in the head's dtype, through the
    # backward and the optimizer step (benchmarks/fit_logits_trace.py --hold: 2 and 4 B per logit more)
    held = tokens * V * (4 if upcast else a) if job.holds_output and kn.loss == "standard" else 0.0
    lin_params = L * sum(lin.d_in * lin.d_out for lin in linears(arch))
    g_layer = (lin_params / L) * param_bytes if full else 0.0
    g_head = (params - lin_params) * param_bytes if full else params * param_bytes  # LoRA: all grads at once
    # the larger of: the loss at the end of forward; backward after k blocks (their activations freed, their
    # gradients made); the optimizer step (torch AdamW foreach keeps one temporary the size of a moment)
    step_tmp = (params + proj) * param_bytes if opt in ("adamw", "paged_adamw") else 0.0
    phases = {"loss": {"activations": stack + final + proj_saved + prev_graph, "logits": logits + held}}
    if vision:  # the frozen tower runs first, keeping nothing for backward
        phases["vision forward"] = {"activations": vision}
    if full and kn.loss == "fused":  # the fused loss makes the head's weight gradient in forward
        phases["loss"]["gradients"] = V * h * param_bytes
    if full and kn.loss == "tiled":  # TRL's head accumulates the head's weight gradient in fp32, then casts it
        phases["loss"]["gradients"] = V * h * (4 + (param_bytes if param_bytes != 4 else 0))
    if kn.optimizer_in_backward:  # one gradient (and its optimizer temporary) at a time; no optimizer phase
        g_max = max([V * h, *(lin.d_in * lin.d_out for lin in linears(arch))] if full else
                    [job.lora_rank * max(lin.d_in, lin.d_out) for lin in adapted]
                    + ([h * h] if proj else [])) * param_bytes
        phases["backward"] = {"activations": stack + grad_tmp + proj_saved, "gradients": g_max,
                              "runtime": g_max if step_tmp else 0.0, "logits": held}
    else:
        def left(k: int) -> float:  # activations still saved after k blocks of backward
            return stack if kn.activation_offload else stack * (L - k) / L

        # linear in k, so the peak is at an end: before backward starts (k = 0) or when every block's done (k = L)
        best_k = max((0, L), key=lambda k: left(k) + k * g_layer)
        # the projector runs first in forward, so its gradients come last in backward: with its saved inputs freed
        phases["backward"] = {"activations": left(best_k) + grad_tmp + proj_saved,
                              "gradients": g_head + best_k * g_layer, "logits": held}
        phases["optimizer step"] = {"gradients": g_head + L * g_layer + proj_grads, "runtime": step_tmp,
                                    "logits": held}
    phase, work = max(phases.items(), key=lambda kv: sum(kv[1].values()))
    adapters = 0.0 if full else (params + proj) * param_bytes  # + PEFT's trainable copy of the projector
    upcast_weights = (wb.embed + wb.output + L * arch.norms_per_layer * norm_params(arch) * a) if upcast else 0.0
    parts = {"weights": wb.total + upcast_weights, "adapters": adapters, "optimizer": 0.0 if paged else states,
             **work}
    # fp16 AMP: autocast caches a 16-bit copy of every weight for the step (torch.autocast weight cast cache)
    parts["runtime"] = parts.get("runtime", 0.0) + wb.dequant + (2.0 * params if amp else 0.0)
    transient = sum(v for k, v in parts.items() if k in ("activations", "logits", "runtime", "gradients"))
    host = (L - on_gpu) * block
    notes = [_method_note(job, fmt, params, arch, param_bytes, kn.lora_dropout),
             f"micro-batch {job.batch} x sequence {job.seq}" + (f" (+{img} image tokens)" if img else "")
             + f", gradient accumulation {job.grad_accum} (does not change the peak)",
             f"gradient checkpointing {'on' if job.grad_ckpt else 'off'}, attention {job.attention}",
             f"optimizer {opt}: {gib(states):.2f} GiB of states"
             + (" in CUDA unified memory (paged: spills to host RAM, not counted in the peak)" if paged else "")
             + (", stepped inside backward (each gradient freed after its step)" if kn.optimizer_in_backward else ""),
             _loss_note(kn.loss, logits, V, stacks.offers(job), job.batch * job.seq, kn.fp32_output, trl),
             f"peak during the {phase}"]
    if proj:
        notes.append(f"projector trained in full ({proj / 1e6:.1f}M parameters"
                     + (", PEFT's modules_to_save copy" if not full else "")
                     + f"): {gib((0 if full else proj * param_bytes) + proj_grads):.2f} GiB of "
                     + ("weights, " if not full else "") + "gradients, its optimizer states among the optimizer's, "
                     f"{gib(proj_saved):.2f} GiB saved for backward")
    if job.stack != "transformers":
        notes.insert(0, f"stack {job.stack}: its defaults fill the knobs not given (onecard.fit.stacks)")
    if kn.activation_offload:
        notes.append(f"activation offload: {gib(host):.2f} GiB of saved activations in host RAM, "
                     f"{on_gpu} block(s) on the GPU")
    if wb.dequant:
        notes.append(f"4-bit matmuls dequantize one weight at a time: {gib(wb.dequant):.2f} GiB buffer")
    if upcast:
        notes.append(f"PEFT's prepare_model_for_kbit_training: embeddings, head and norms in fp32 "
                     f"(+{gib(upcast_weights):.2f} GiB), the residual stream, the 4-bit linears' outputs and what "
                     "each block keeps for backward in fp32")
    if why_math:
        notes.append(f"SDPA's math kernel for grouped KV heads ({why_math}): each block's fp32 attention scores, "
                     f"{gib(MATH_SDPA_BYTES_PER_SCORE * score_n):.2f} GiB while its backward runs"
                     + ("" if job.grad_ckpt else f", {gib(4.0 * score_n * L):.2f} GiB of softmax outputs kept"))
    if held:
        notes.append(f"the loop keeps the model's output through backward (holds_output): its logits, "
                     f"{gib(held):.2f} GiB")
    if lightning:
        kept = (f"; bitsandbytes {job.bitsandbytes_version} keeps the previous micro-batch's 4-bit inputs through the "
                f"next forward: {gib(prev_graph):.2f} GiB" if prev_graph else "")
        notes.append(f"{LIGHTNING_NOTE}; SDPA's saved k and v hold more than their width (k and v expanded to every "
                     f"query head, or the whole fused qkv){kept}")
    slack, slack_text = ALLOC_SLACK * transient, slack_note()
    if kn.loss == "standard" and job.grad_ckpt:
        # the blocks one checkpointed block's forward allocates (the tensors it would save; a frozen quantized
        # linear's kept input is not a new one), all freed under no_grad but cached
        block_fwd = layer_saved_bytes(arch, a, full, full, adapted, job.attention, seq, job.lora_rank, param_bytes,
                                      kn.lora_dropout > 0, kn.qkv_one_adapter, kn.qkv_one_adapter) * tokens
        loss_reserved = sum(phases["loss"].values()) + loss_segments_bytes(tokens, V, block_fwd)
        if loss_reserved - sum(work.values()) > slack:
            slack = loss_reserved - sum(work.values())
            slack_text = (f"PyTorch allocator at the loss: its fp32 logit tensors are larger than every cached block, "
                          f"so they take new segments beside {gib(block_fwd):.2f} GiB the checkpointed forward "
                          f"cached, and the log-softmax gradient cannot reuse the 16-bit logits' block: "
                          f"{gib(slack):.2f} GiB reserved above allocated (replayed allocator rules, "
                          "benchmarks/fit_logits_trace.py)")
    est = Estimate({k: gib(v) for k, v in parts.items()}, slack_gib=gib(slack),
                   context_gib=CUDA_CONTEXT_GIB, cpu_gib=gib((states if paged else 0.0) + host),
                   assumptions=[*notes, slack_text, context_note()])
    _nf4_load_cache(est, arch, job, parts)
    _step_time(est, arch, job, card, tokens, a, host)
    return est


# torchtune's QLoRA on torchao before 0.2 converts each base weight to NF4 whole, twice (the model built on the GPU,
# then the checkpoint's weights loaded), and the single-device recipe never empties the cache: what stays reserved
# after the load, as a multiple of the largest base weight's bf16 bytes, replayed through the allocator's rules for
# each shape (benchmarks/fit_nf4_load_replay.py, torchtune 0.1.0 + torchao 0.1); another shape takes the least.
NF4_LOAD_CACHE_PER_WEIGHT_BYTE = {"llama-2-7b": 51.0, "llama-2-13b": 44.3, "llama-3-8b": 40.9}
NF4_CHUNKED_SINCE = (0, 2, 0)  # torchao 0.2.0: nf4tensor.py converts in chunks of CHUNK_SIZE = 1024**2 elements


def _nf4_load_cache(est: Estimate, arch: LlmArch, job: FitJob, parts: dict[str, float]) -> None:
    """The cache torchao's whole-weight NF4 conversion leaves after torchtune's QLoRA load (torchao before 0.2): the
    load's reserved peak is the weights plus it; training reuses it, so the reading is the larger of the two."""
    if job.torchao_version is None or release(job.torchao_version, (0, 0, 0)) >= NF4_CHUNKED_SINCE or \
            job.method != "qlora" or job.stack != "torchtune":
        return
    largest = max(lin.d_in * lin.d_out for lin in linears(arch)) * 2
    per_byte = NF4_LOAD_CACHE_PER_WEIGHT_BYTE.get(arch.key, min(NF4_LOAD_CACHE_PER_WEIGHT_BYTE.values()))
    load_reserved = parts["weights"] + parts.get("adapters", 0.0) + per_byte * largest
    est.cache_gib = max(0.0, gib(load_reserved) - est.peak_reserved_gib)
    est.assumptions.append(
        f"torchao {job.torchao_version} converts each base weight to NF4 whole: the load leaves "
        f"{gib(per_byte * largest):.2f} GiB in the allocator's cache ({per_byte:g} x the largest weight's bf16 bytes, "
        "benchmarks/fit_nf4_load_replay.py), which training reuses; reserved readings hold the larger of the load "
        "and the training step")

BNB_DROPS_INPUT = (0, 43, 2)  # bitsandbytes 0.43.2: MatMul4Bit keeps `ctx.tensors = (None, B)`, not its input


def loss_bytes(loss: str, tokens: int, V: int, h: int, a: int, fp32_output: bool = False,
               trl: tuple[int, int, int] = stacks.CURRENT_TRL) -> float:
    """Bytes the loss holds at its peak (see the module docstring).

    `fp32_output` (LitGPT under Fabric): the precision plugin casts the model's output, every chunk of logits, to
    fp32 (`convert_output`: `dst_type=torch.get_default_dtype()`), the training loop holds that list through
    backward (finetune/lora.py `logits = model(...)`), and each chunk's cross-entropy keeps its fp32 log-softmax:
    4 + 4 B per logit.
    """
    if loss == "chunked" and fp32_output:
        return tokens * V * 8.0
    if loss == "chunked":  # 16-bit logits kept for backward + one chunk upcast to fp32
        return tokens * V * (a + 4.0 / stacks.LOSS_CHUNKS)
    if loss == "fused":  # Liger: the input gradient (BT x H) + one chunk of logits (next_pow2(BT / ceil(V / H)) rows)
        chunk = min(tokens, 1 << max(0, math.ceil(math.log2(math.ceil(tokens / math.ceil(V / h))))))
        return float(a * tokens * h + a * chunk * V)
    if loss == "tiled" and trl < stacks.TRL_FUSED_HEAD_SINCE:  # TRL 1.4-1.14's chunked_nll (TRL_NLL_CHUNK)
        chunk = min(tokens, TRL_NLL_CHUNK) * V
        head = V * h * 4.0 + 12.0 * chunk if trl < stacks.TRL_HEAD_IN_COMPUTE_DTYPE_SINCE else 16.0 * chunk
        return head + (2 * a + 4) * tokens * h
    if loss == "tiled":  # TRL's backward: one logits tile + the saved 16-bit input, its fp32 gradient and 16-bit cast
        return float(a * min(tokens, TRL_TILE_TOKENS) * TRL_TILE_VOCAB + (2 * a + 4) * tokens * h)
    return tokens * V * 12.0  # cross-entropy backward: saved fp32 log-softmax + its grad + the input grad


def loss_segments_bytes(tokens: int, V: int, block_fwd: float) -> float:
    """Bytes the CUDA caching allocator reserves above the allocated ones at the standard loss, with checkpointing.

    The loss's tensors of batch x seq x vocab (16-bit logits, 2 B per logit; fp32 ones, 4 B) are larger than any
    block the body allocated, and the allocator never merges segments (c10/cuda/CUDACachingAllocator.cpp: a request
    takes a cached block at least its size, else reserves a new segment), so they reserve new memory while what one
    checkpointed block's forward allocated (`block_fwd`) sits cached; and the log-softmax backward's input gradient
    (4 B per logit) finds only the freed 16-bit logits' 2 B block and the fp32 ones still in use: 14 B per logit
    reserved at the loss's 12 B peak. Replayed on the traced allocations of Llama-2-7B QLoRA (transformers 4.39.3 +
    PEFT 0.10 with reentrant checkpointing as LLaMA-Factory 0.6 runs it, and 5.25 + PEFT 0.21 non-reentrant) with
    `trace.replay_caching_allocator`: 1.04 and 1.07 GiB above the allocated peak at 4,096 tokens, 7.96 at 32,768,
    against 1.02 and 8.15 from this term (benchmarks/fit_logits_trace.py).
    """
    return block_fwd + 2.0 * tokens * V


def _loss_note(loss: str, nbytes: float, V: int, offered: frozenset[str], tokens: int, fp32_output: bool,
               trl: tuple[int, int, int] = stacks.CURRENT_TRL) -> str:
    if loss == "chunked" and fp32_output:
        return (f"chunked loss on the fp32 logits Fabric's precision plugin returns: {gib(nbytes):.2f} GiB (the fp32 "
                f"logits the loop holds + each chunk's fp32 log-softmax, vocab {V})")
    if loss == "chunked":
        return (f"chunked loss: {gib(nbytes):.2f} GiB of 16-bit logits + one of {stacks.LOSS_CHUNKS} chunks upcast to "
                f"fp32 (vocab {V})")
    if loss == "fused":
        return f"fused linear cross-entropy: no full logits, {gib(nbytes):.2f} GiB (input gradient + one chunk)"
    if loss == "tiled" and trl < stacks.TRL_FUSED_HEAD_SINCE:
        head = " through an fp32 copy of the head" if trl < stacks.TRL_HEAD_IN_COMPUTE_DTYPE_SINCE else ""
        return (f"TRL {'.'.join(map(str, trl))}'s chunked_nll: no full logits, {gib(nbytes):.2f} GiB ({TRL_NLL_CHUNK} "
                f"tokens at a time{head}, vocab {V})")
    if loss == "tiled":
        return (f"TRL's fused LM head: no full logits, {gib(nbytes):.2f} GiB (one {min(tokens, TRL_TILE_TOKENS)} x "
                f"{TRL_TILE_VOCAB} tile of logits + the input, its fp32 gradient and 16-bit cast), every token counted "
                "as scored (TRL scores only the labelled ones)")
    fix = "; the stack offers a lighter one (--loss chunked/fused)" if offered & {"chunked", "fused"} else ""
    return (f"loss backward holds {gib(nbytes):.2f} GiB of fp32 logit tensors (log-softmax, its grad, the input grad; "
            f"vocab {V}); a fused/chunked cross-entropy (Liger, torchtune) would not{fix}")


def _method_note(job: FitJob, fmt: WeightFormat, params: int, arch: LlmArch, adapter_bytes: int,
                 dropout: float) -> str:
    if job.method == "full":
        dtype = "fp32 master weights + fp16 autocast" if fmt.name == "fp16" else f"pure {fmt.name}"
        return f"full fine-tuning, {dtype}: {params / 1e9:.2f}B trainable parameters"
    base = f"{fmt.name} base" if fmt.quantized else f"frozen {fmt.name} base"
    return (f"{'QLoRA' if fmt.quantized else 'LoRA'} on {job.lora_targets}, r={job.lora_rank} "
            + (f"({params / 1e6:.1f}M fp32 adapter parameters, PEFT default) under bf16/fp16 autocast (Trainer "
               "bf16=True: each adapter keeps a 16-bit copy of its input)" if adapter_bytes == 4 else
               f"({params / 1e6:.1f}M 16-bit adapter parameters, no autocast)") + f", {base}, lora_dropout {dropout:g}"
            + (" (a 1-byte mask per adapter input element)" if dropout else ""))


def _step_time(est: Estimate, arch: LlmArch, job: FitJob, card: GpuSpec | None, tokens: int, a: int,
               host: float) -> None:
    """FLOPs per token: 2N forward, 4N backward for full (2N for LoRA: no weight gradients), +2N recompute.

    Offloaded activations cross PCIe twice a step on copy streams that overlap compute: the step takes the longer.
    """
    tflops = 0.0 if card is None else (card.bf16_tflops if card.bf16 and a == 2 else card.fp16_tflops / (a // 2))
    if tflops <= 0:
        est.throughput_note = "no TFLOPS figure for this card: step time not estimated"
        return
    n = n_params(arch, with_vision=False) - arch.vocab * arch.hidden  # the input embedding is a lookup
    mult = (6 if job.method == "full" else 4) + (2 if job.grad_ckpt else 0)
    mfu = MFU[job.method]
    est.step_s = max(mult * n * tokens / (tflops * 1e12 * mfu), 2 * host / (PCIE_GBPS * 1e9))
    est.throughput_note = (f"{mult}N FLOPs per token ({'full' if job.method == 'full' else 'no weight gradients'}"
                           f"{', recompute' if job.grad_ckpt else ''}) at {mfu:.0%} of {tflops:g} TFLOPS"
                           + (f"; offloaded activations cross PCIe at {PCIE_GBPS:g} GB/s, overlapped" if host else ""))

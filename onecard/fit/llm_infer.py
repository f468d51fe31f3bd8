"""LLM/VLM inference memory on transformers (generate), llama.cpp, Ollama and vLLM.

- transformers: weights + the KV cache + the larger of two phases: prefill (the prompt's activations, eager
  attention's T x T scores, the dequantization buffer of 4-bit matmuls, the sampled logits) and the last decode step
  (full KV cache, one token's activations, the KV concat copy of `DynamicCache`). Older releases
  (`--transformers-version`) add the prompt's logits (every position, fp32 before 4.46) and a decode step that copies
  the whole tuple cache (before 4.42).
- AutoAWQ fused modules (`--runtime autoawq`): the same model with a KV cache allocated for batch x ctx at load, the
  fused attention of its release (`--autoawq-version`: eager with an fp32 softmax through 0.2.6, SDPA in 0.2.7,
  FlashAttention-2 since 0.2.7.post3), and the fuser's own peak (every layer's q, k, v twice).
- llama.cpp: the buffers it logs (model, KV, compute). The compute buffer is Ollama's GraphSize formula for llama
  (ollama fs/ggml/ggml.go), which gives the measured.md rows 12-13 to the MiB: 4*n_ub*(1 + 4*n_embd +
  n_ctx*(1 + n_head)) with all layers offloaded (scores, mask and four hidden-size tensors), or the output layer
  4*n_ub*(n_embd + n_vocab), whichever is larger.
- Ollama: llama.cpp, with the layer count its estimator picks: per layer blk.0 + KV/L, plus 457 MiB minimum memory
  (discover/gpu.go cudaMinimumMemory), one spare layer and the graph (llm/memory.go EstimateGPULayers).
- vLLM: takes gpu_memory_utilization of the card; what weights, profiling activations and CUDA graphs leave is the
  paged KV block pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from onecard.core.errors import ConfigError
from onecard.fit.catalog import LlmArch, linears, n_params
from onecard.fit.estimate import GIB, Estimate, gib
from onecard.fit.formats import (
    GPTQ_AWQ_BYTES_PER_WEIGHT,
    LIGHTNING_NOTE,
    WeightBytes,
    kv_bytes_per_token,
    parse_quant,
    weight_bytes,
)
from onecard.fit.job import FitJob, release
from onecard.fit.overheads import (
    ALLOC_SLACK,
    CUDA_CONTEXT_GIB,
    MIN_LARGE_ALLOC,
    ROUND_LARGE,
    context_note,
    lazy_note,
    round_large,
    slack_note,
)

if TYPE_CHECKING:
    from onecard.core.gpus import GpuSpec

__all__ = ["estimate", "runtime_of", "graph_bytes", "transformers_release", "math_sdpa", "OWN_ATTENTION"]

OLLAMA_MIN_MIB = 457  # ollama discover/gpu.go: cudaMinimumMemory = 457 MiB
LLAMA_CPP_UBATCH = 512  # llama.cpp default n_ubatch (and llama-cpp-python's n_batch)
# vLLM V1 `vllm serve` default max_num_batched_tokens (chunked prefill); the profiling forward takes that many tokens.
# The V0 engine (vLLM < 0.8) turned chunked prefill on only past 32k tokens of context and otherwise took
# max(max_model_len, 2048) (vllm/config.py SchedulerConfig.__post_init__, 0.6.x): --max-num-batched-tokens
VLLM_BATCHED_TOKENS = 2048
# vLLM's default max_num_seqs (vllm/engine/arg_utils.py: EngineArgs.max_num_seqs 0.6.4 l.123; V1 0.8.5 l.1609 on cards
# under 70 GiB, 1024 above): the profiling run samples that many dummy sequences. Not a FitJob knob.
VLLM_MAX_SEQS = 256
# The profiling run's sampler phase, after the forward (V0 0.6.4 and 0.6.5, V1 0.8.5 and 0.11.0; read in their wheels):
# the dummy requests sample with top_k = vocab - 1 and top_p < 1 (0.6.4 vllm/worker/model_runner.py profile_run
# l.1211; 0.8.5 v1/worker/gpu_model_runner.py _dummy_sampler_run l.1527-1528), so the sampler sorts the (max_num_seqs
# x vocab) logits in fp32 (0.6.4 model_executor/layers/sampler.py _apply_top_k_top_p l.431; 0.8.5
# v1/sample/ops/topk_topp_sampler.py l.189; 0.11.0 l.183 unless the optional `vllm[flashinfer]` is installed). Alive
# per logit while the sort runs: the model-dtype logits the runner holds, the fp32 copy (0.6.4 sampler.py l.269), and
# PyTorch's CUDA sort of >= 128 rows longer than 4096 (aten/src/ATen/native/cuda/Sort.cpp, SortStable.cu
# segmented_sort_pairs; the wheels pin torch 2.5.1-2.8): the sorted fp32 values (4 B), the int64 indices (8), its int64
# reverse_indices input (8), and CUB's spare key and value buffers (DeviceSegmentedRadixSort::SortPairs is not
# overwrite-okay: num_items x (4 + 8)). vLLM 0.34.0 depends on FlashInfer and samples top-k/top-p without a full
# sort: there the term is on the high side (a smaller KV pool than vLLM's).
VLLM_SORT_BYTES_PER_LOGIT = 4 + 8 + 8 + 4 + 8
VLLM_CUDA_GRAPH_GIB = 0.5  # captured CUDA graphs (vLLM logs 0.3-0.6 GiB for 7-8B models)
# What generate holds, by transformers release (read in the released wheels):
# - before 4.42 the cache travels between steps as a tuple of per-layer (K, V) tensors: each decode step's
#   attention makes a new one with torch.cat (models/llama/modeling_llama.py 4.35.0 l.382-385; 4.38.2 rebuilds a
#   DynamicCache from the tuple and returns `to_legacy_cache()`, l.982 and l.1046) while generate's model_kwargs
#   still hold the old one, so the last layer of a step ends with the whole cache twice. 4.42 passes a DynamicCache
#   (generation/utils.py 4.42.0 l.1775-1780), whose update replaces each layer's tensor (cache_utils.py).
# - before 4.45 the model's head runs on every prompt position; 4.45 passes num_logits_to_keep=1
#   (generation/utils.py 4.45.0 l.1900-1904) to the models whose forward takes it: Llama, Mistral, Qwen2, Phi-3,
#   Gemma 2, LLaVA in 4.45.0; Falcon from 4.47.0 (modeling_falcon.py, absent in 4.46.3); GPTBigCode from 5.0.0
#   (`logits_to_keep`, absent in 4.57.0);
# - before 4.46 Llama-style heads upcast: `logits = logits.float()` (modeling_llama.py 4.38.2 l.1196, 4.45.0
#   l.1214; 4.46.0 l.1210 keeps the model dtype). Falcon's and GPTBigCode's heads never did (`lm_logits =
#   self.lm_head(hidden_states)`).
# - each attention layer built its own RoPE table, cos and sin for all max_position_embeddings positions in the
#   model's dtype (`register_buffer("cos_cached", ...)`): Llama until 4.40 (`_cos_cached`, modeling_llama.py 4.40.0
#   l.112; none in 4.41.2), Mistral until 4.41 (4.41.2 l.114; none in 4.42.0), Qwen2 until 4.44 (4.44.0; none in
#   4.45.0, where one model-level rotary module computes them per step). Other families are not modelled.
# - from 4.54 a grouped-KV model's SDPA call without a mask passes enable_gqa=True instead of repeating k and v
#   (integrations/sdpa_attention.py `use_gqa_in_sdpa`, 4.54.0 to 5.x, with PyTorch 2.5+; huggingface/transformers
#   #39412). PyTorch runs grouped KV heads only in its flash kernel ("It currently works only for Flash_attention and
#   math kernel on CUDA tensor": F.scaled_dot_product_attention's docstring, 2.5 to 2.13; pytorch/pytorch#139586),
#   which needs compute capability 8.0 and fp16/bf16, so on a T4, an RTX 20xx, a V100 or in fp32 the prefill runs
#   the math kernel, which keeps every intermediate in fp32 (same docstring) and materialises the scores:
#   `_scaled_dot_product_attention_math` (aten/src/ATen/native/transformers/attention.cpp) holds the (B, heads, T, T)
#   fp32 scores, `_safe_softmax`'s output (4 B), its -inf test (1 B) and `where`'s result (4 B) together, 13 bytes
#   per score, beside the causal mask as bool and as fp32 (5 bytes per T x T).
DYNAMIC_CACHE_SINCE, LAST_LOGITS_SINCE, NO_UPCAST_SINCE = (4, 42), (4, 45), (4, 46)
GQA_SDPA_SINCE = (4, 54)
MATH_SDPA_BYTES_PER_SCORE, MATH_SDPA_MASK_BYTES = 13, 5
_ROPE_TABLES_UNTIL = {"llama": (4, 40), "llava": (4, 40), "mistral": (4, 41), "qwen2": (4, 44)}
_LAST_LOGITS_SINCE = {"falcon": (4, 47), "gpt_bigcode": (5, 0)}
CURRENT_TRANSFORMERS = (5, 0)  # unset: a release with every one of these changes
_NO_UPCAST = frozenset({"falcon", "gpt_bigcode"})


def runtime_of(arch: LlmArch, job: FitJob) -> str:
    """The runtime that holds the model: the job's, else llama.cpp for GGUF files and types, else transformers."""
    if job.runtime != "auto":
        return job.runtime
    wf = arch.weights_file
    if wf is not None and wf.format == "gguf":
        return "llama.cpp"
    q = job.quant.lower()
    return "llama.cpp" if q.startswith("q") and q[1:2].isdigit() else "transformers"  # a GGUF type: q4_k_m


def _decode_speed(est: Estimate, card: GpuSpec | None, read_bytes: float, batch: int, runtime: str) -> None:
    """Decode is memory-bound: each step reads every weight once and each sequence's KV cache."""
    if card is None or card.bandwidth_gbs <= 0:
        est.throughput_note = "no bandwidth figure for this card: decode speed not estimated"
        return
    est.tokens_per_s = batch * card.bandwidth_gbs * 1e9 / read_bytes
    est.throughput_note = (f"{runtime} decode, {batch} sequence(s): {card.bandwidth_gbs:g} GB/s peak bandwidth / "
                           f"{read_bytes / 1e9:.2f} GB read per step (weights + KV); an upper bound")


# AutoAWQ's fused attention by release (awq/modules/fused/attn.py and block.py, read at every tag of
# casper-hansen/AutoAWQ): through 0.2.6 `F.softmax(scores.float())` on the T x T scores; 0.2.7 to 0.2.7.post2 PyTorch
# SDPA with the (1, 1, T, T) causal mask its model builds (fused_utils.prepare_attention_mask) for the Llama-like and
# Mixtral blocks (use_sdpa=True; the Falcon, MPT, Phi-3, Gemma 2 and Cohere blocks stay eager); from 0.2.7.post3
# (2024-12-06) flash_attn_func, causal, no mask, for every block. 0.2.9 (2025-05) is the last release.
AUTOAWQ_SDPA_SINCE, AUTOAWQ_FLASH_SINCE, CURRENT_AUTOAWQ = (0, 2, 7, 0), (0, 2, 7, 3), (0, 2, 9, 0)
AUTOAWQ_SDPA_FAMILIES = frozenset({"llama", "mistral", "qwen2", "llava"})  # AutoAWQ's LlamaLikeBlock models
_AUTOAWQ_KERNELS = {"eager": "eager attention with an fp32 softmax", "sdpa": "PyTorch SDPA with a T x T causal mask",
                    "flash": "FlashAttention-2 (flash-attn must be installed), no scores or mask"}


def autoawq_attention(arch: LlmArch, job: FitJob) -> str:
    """The fused attention AutoAWQ's release runs for the model: "eager", "sdpa" or "flash" (see AUTOAWQ_SDPA_SINCE)."""
    if job.autoawq_version is None:
        version = CURRENT_AUTOAWQ
    else:
        numbers, _, post = job.autoawq_version.partition(".post")
        version = (*release(numbers, CURRENT_AUTOAWQ[:3]), int(post or 0))
    if version >= AUTOAWQ_FLASH_SINCE:
        return "flash"
    return "sdpa" if version >= AUTOAWQ_SDPA_SINCE and arch.family in AUTOAWQ_SDPA_FAMILIES else "eager"


def transformers_release(job: FitJob) -> tuple[int, int]:
    """The job's transformers release as (major, minor); unset is the current behaviour (5.0 or later)."""
    major, minor, _ = release(job.transformers_version, (*CURRENT_TRANSFORMERS, 0))
    return major, minor


# Stacks whose own attention expands grouped k and v before calling SDPA (torchtune's MultiHeadAttention, LitGPT's
# CausalSelfAttention) or replaces it (unsloth's kernels): transformers' enable_gqa never reaches the kernel
OWN_ATTENTION = frozenset({"torchtune", "litgpt", "unsloth"})


def math_sdpa(arch: LlmArch, job: FitJob, a: int, card: GpuSpec | None) -> str | None:
    """Why a grouped-KV model's SDPA attention runs PyTorch's math kernel here (see GQA_SDPA_SINCE), or None."""
    if not (job.attention == "sdpa" and job.runtime != "autoawq" and job.stack not in OWN_ATTENTION
            and arch.kv_dim < arch.q_dim
            and arch.head_dim <= 256 and transformers_release(job) >= GQA_SDPA_SINCE):
        return None
    if a == 4:
        return "fp32"
    if card is not None and (0, 0) < card.compute_capability < (8, 0):
        return "no flash kernel below compute capability 8.0"
    return None


def _transformers(arch: LlmArch, job: FitJob, card: GpuSpec | None, notes: list[str]) -> Estimate:
    fmt = parse_quant(arch, job, card, "transformers")
    if fmt.kind == "gguf":
        raise ConfigError(f"{fmt.name} is a GGUF format; transformers would dequantize it to 16-bit",
                          "use --runtime llama.cpp (or ollama) for GGUF, or a transformers format such as nf4")
    fused = job.runtime == "autoawq"
    if fused and fmt.kind != "awq":
        raise ConfigError(f"--runtime autoawq runs AWQ checkpoints; --quant {job.quant} is not one",
                          "use --quant awq, or --runtime transformers")
    lightning = job.stack == "litgpt"  # LitGPT's generate under Lightning Fabric (formats.weight_bytes)
    a, wb = fmt.act_bytes, weight_bytes(arch, fmt, lightning, card is None or card.bf16)
    if lightning:
        notes.append(LIGHTNING_NOTE + (f"; its {'int8 load' if fmt.kind == 'int8' else 'fp16 dequantization'} "
                                       f"peaks at {gib(wb.dequant):.2f} GiB beside the weights" if wb.dequant else ""))
    B, L, h, f, V = job.batch, arch.n_layers, arch.hidden, arch.intermediate, arch.vocab
    img = arch.vision.image_tokens if arch.vision else 0
    prompt = max(job.ctx - job.new_tokens, 1) + img
    ctx = job.ctx + img
    kvt = kv_bytes_per_token(arch, job.kv_dtype, a)
    release = transformers_release(job)
    tuple_cache = release < DYNAMIC_CACHE_SINCE and not fused  # AutoAWQ's fused attention keeps its own cache
    all_logits = release < _LAST_LOGITS_SINCE.get(arch.family, LAST_LOGITS_SINCE)
    upcast = release < NO_UPCAST_SINCE and arch.family not in _NO_UPCAST
    # no autograd: per token the residual stream, the norm output (+ its fp32 upcast) and the MLP's gate, up and
    # activation (the gated product takes the gate's place), or the attention's q, k, v and output
    # eager attention with grouped KV heads: repeat_kv copies the layer's whole cache of k and v to every query head
    # at every step (transformers models/llama/modeling_llama.py repeat_kv, called by the eager attention)
    repeat = job.attention == "eager" and arch.kv_dim < arch.q_dim and not fused
    kv_width = arch.q_dim if repeat else arch.kv_dim
    per_tok = 2 * a * h + 4 * h + max((3 if arch.gated_mlp else 2) * a * f, a * (2 * arch.q_dim + 2 * kv_width))
    if fmt.kind == "int8":  # LLM.int8 matmul (bitsandbytes 0.45 MatMul8bitLt.forward, inference path): beside its
        # fp16 output the largest linear holds the input quantized to int8 and the int32 product (int8_linear_matmul)
        per_tok += max(lin.d_in + 4 * lin.d_out for lin in linears(arch))
    scores = 0.0
    why = math_sdpa(arch, job, a, card)
    kernel = autoawq_attention(arch, job) if fused else job.attention
    if fused:  # awq/modules/fused/attn.py: the block holds its input, the norm output and the fused qkv; eager and
        # SDPA repeat k and v to every query head (repeat_interleave) and build the (1, 1, T, T) mask; eager then
        # holds the fp16 scores and `F.softmax(scores.float())` (an fp32 copy and the fp32 output), SDPA its output
        # and the contiguous copy of it; FlashAttention-2 reads grouped k and v as they are, no mask. The MLP's
        # tensors are not alive then.
        attn_extra = {"flash": a * arch.q_dim, "sdpa": 4 * a * arch.q_dim,
                      "eager": 2 * a * arch.q_dim + prompt * arch.n_heads * (a + 8)}[kernel]
        per_tok = max(per_tok, a * (2 * h + arch.q_dim + 2 * arch.kv_dim) + attn_extra)
        scores = 0.0 if kernel == "flash" else prompt * prompt * a  # the (1, 1, T, T) mask
    elif job.attention == "eager":  # T x T scores in the model dtype, the fp32 softmax and its cast back, the mask
        scores = B * prompt * prompt * (arch.n_heads * (2 * a + 4) + a)
    elif why is not None:  # grouped KV heads through SDPA's math kernel (see GQA_SDPA_SINCE)
        scores = prompt * prompt * (B * arch.n_heads * MATH_SDPA_BYTES_PER_SCORE + MATH_SDPA_MASK_BYTES)
        notes.append(f"SDPA's math kernel for grouped KV heads ({why}): the prompt's fp32 attention scores, "
                     f"{gib(scores):.2f} GiB for one layer")
    vision = B * (img + 1) * a * 6 * arch.vision.hidden if arch.vision else 0.0  # ViT block: residual, norm, 4h MLP
    last = B * V * (a + 4)  # the last position's logits + the fp32 copy sampling takes
    # before 4.45 every prompt position goes through the head (and, before 4.46, `logits.float()` holds both widths);
    # generate keeps that output until the next step's forward returns
    head = B * prompt * V * (a + (4 if upcast else 0)) if all_logits else 0.0
    held = B * prompt * V * (4 if upcast else a) if all_logits else 0.0
    # the cache: pre-allocated for the whole context (AutoAWQ), else grown per step
    kv_prompt = B * (ctx if fused else prompt) * kvt
    # tuple cache: the old and the concatenated new cache, every layer, once a decode step runs (new_tokens > 1)
    kv_step = 2.0 if tuple_cache and job.new_tokens > 1 else 1.0
    concat = 0.0 if tuple_cache or fused else B * ctx * kvt / (2 * L)  # DynamicCache: one layer's K or V copy
    repeated = 2 * B * ctx * a * arch.q_dim if repeat else 0.0  # one layer's k and v at every query head
    # Not part of what has to fit, but what a card with room keeps: the tuple cache, grown with torch.cat, leaves
    # free allocator segments behind (`stranded`, the estimate's cache).
    phases: dict[str, dict[str, float]] = {
        "prefill": {"kv_cache": kv_prompt, "activations": B * prompt * per_tok + scores + vision,
                    "logits": 0.0 if all_logits else last, "runtime": wb.dequant},
        "decode": {"kv_cache": kv_step * B * ctx * kvt, "activations": B * per_tok + concat + repeated,
                   "logits": last}}
    if all_logits:
        phases["prompt logits"] = {"kv_cache": kv_prompt, "activations": B * prompt * a * h, "logits": head}
    if all_logits and job.new_tokens > 1:
        phases["first decode step"] = {"kv_cache": kv_step * kv_prompt, "activations": B * per_tok,
                                       "logits": held + last}
    if fused:  # the fuser's peak: every layer's q, k and v twice, and the caches already allocated
        dup = 0.0 if arch.fused_qkv else L * (arch.q_dim + 2 * arch.kv_dim) * h * GPTQ_AWQ_BYTES_PER_WEIGHT
        phases["fusing"] = {"kv_cache": B * ctx * kvt, "runtime": dup}
    if fmt.kind == "gptq":  # exllama's temp_dq, allocated at load and kept: the largest weight at fp16
        # (AutoGPTQ v0.4.2 auto_gptq/modeling/_utils.py autogptq_post_init, l.223 and l.249)
        for work in phases.values():
            work["runtime"] = wb.dequant
    phase, work = max(phases.items(), key=lambda kv: sum(kv[1].values()))
    parts = {"weights": wb.total, **work}
    transient = sum(v for k, v in parts.items() if k in ("activations", "logits", "runtime"))
    rope = 0.0  # RoPE tables held from load on (not in the allocator's slack)
    if fused:  # each fused attention has its own complex64 RoPE table of 2 x max_seq_len positions
        rope = L * 2 * ctx * (arch.head_dim // 2) * 8
    elif release <= _ROPE_TABLES_UNTIL.get(arch.family, (0, 0)):  # per-layer cos and sin tables (see above)
        rope = L * 2 * arch.max_ctx * arch.head_dim * a
        notes.append(f"transformers before the shared rotary module: every layer holds cos and sin tables for "
                     f"{arch.max_ctx} positions, {gib(rope):.2f} GiB")
    if rope:
        parts["runtime"] = parts.get("runtime", 0.0) + rope
    notes += [f"weights {fmt.name}" + (f" ({gib(wb.total):.2f} GiB)" if fmt.quantized else ""),
              f"batch {B}, context {job.ctx} tokens ({job.ctx - job.new_tokens} prompt + {job.new_tokens} new)",
              f"KV cache {job.kv_dtype if job.kv_dtype not in ('f16', 'bf16') else 'in the model dtype'}: "
              f"{kvt / 1024:.0f} KiB/token", f"peak during the {phase}",
              f"attention {kernel}"
              + (f" (AutoAWQ {job.autoawq_version or '0.2.7.post3+'}'s fused attention)" if fused else "")
              + (": T x T scores materialised" if kernel == "eager" else "")]
    notes.append(_release_note(job, all_logits, upcast, tuple_cache) if not fused else
                 f"AutoAWQ fused modules: a {gib(B * ctx * kvt):.2f} GiB KV cache pre-allocated for batch {B} x "
                 f"{job.ctx} positions, {_AUTOAWQ_KERNELS[kernel]}"
                 + ("" if arch.fused_qkv else ", and each layer's q, k, v held twice while the fuser runs"))
    if wb.dequant:
        notes.append(f"prefill matmuls dequantize one weight at a time: {gib(wb.dequant):.2f} GiB buffer")
    if img:
        notes.append(f"one image per sequence: {img} image tokens in the context")
    soaked = arch.kv_dim < arch.q_dim or (fmt.kind == "bnb4" and B > 1)  # see `stranded`
    cache = stranded(B * kvt / (2 * L), prompt, job.new_tokens, L) if tuple_cache and not soaked else 0.0
    if cache:
        notes.append(f"the tuple KV cache grows by torch.cat: each layer's K and V leave a {gib(cache):.2f} GiB trail "
                     "of freed segments a card with room keeps (not part of what has to fit)")
    est = Estimate({k: gib(v) for k, v in parts.items()}, slack_gib=gib(ALLOC_SLACK * transient),
                   context_gib=CUDA_CONTEXT_GIB, assumptions=[*notes, slack_note()], cache_gib=gib(cache))
    _decode_speed(est, card, wb.total + B * (prompt + job.new_tokens / 2) * kvt, B, "transformers")
    return est


def stranded(per_token: float, prompt: int, new_tokens: int, layers: int) -> float:
    """Bytes of freed segments transformers' tuple KV cache (before 4.42) leaves in PyTorch's caching allocator over a
    generate call, on a card with room to keep them.

    Each decode step makes every layer's K and V anew with torch.cat, one token longer. A tensor of 10 MiB or more
    (kMinLargeAlloc) gets a segment of its own, rounded up to 2 MiB (kRoundLarge), which the tensor of the next steps
    reuses until it outgrows it; the outgrown segment stays cached, and no later request fits it (every cache tensor
    after it is larger, and a decode step allocates nothing else that large): one segment left per 2 MiB of growth,
    for each of the 2L tensors. The caching allocator gives whole free segments back when a cudaMalloc fails, so they
    never make a job run out of memory. Measured: optimum-benchmark's Vicuna-7B generate at batch 16 / 8 on an A100
    (transformers 4.35) held 28.8 / 7.2 GiB more than its forward pass (the KV cache's 3 / 1.5 GiB among them), where
    this gives 30 / 7 (its predicted NVML readings within 8% of theirs); replayed through the allocator's rules
    (`benchmarks/fit_kv_stranding_replay.py`) the tuple cache leaves 0.7-1.3x this. DynamicCache (4.42 on) grows by
    torch.cat too, but frees each old tensor at once; replays leave about half of this, and no measurement says how
    much: not counted. Nor where a decode step frees large tensors the cache requests can be cut from: the repeat_kv
    copies of grouped KV heads (not modelled for grouped-KV models at all), bitsandbytes 4-bit matmuls at batch > 1
    (each weight dequantized to fp16 per step: replayed, 7.2 of the tuple cache's 40 GiB stay at Vicuna-7B's batch 16,
    1.2 of 7.7 at batch 8). AWQ's split-k GEMM outputs (AutoAWQ 0.1.6 through transformers) do not: under 10 MiB at
    decode, they come from segments no cache tensor outgrows, and the replay leaves 38.7 of the 40 GiB, so the trail
    is counted for AWQ (optimum-benchmark's AWQ runs at batch 16 held 18 GiB of it: something AWQ frees at decode,
    which the replay lacks, takes part; an over-count there is of cache, never of what has to fit).

    Args:
        per_token: bytes per token of one layer's K (or V) tensor: batch x KV heads x head size x element size.
    """
    if new_tokens < 2:
        return 0.0
    first, last = round_large(per_token * (prompt + 1)), round_large(per_token * (prompt + new_tokens - 1))
    size, total = max(MIN_LARGE_ALLOC, first), 0  # under 10 MiB a tensor shares 20 MiB segments: none outgrown
    while size < last:
        total += size
        size += ROUND_LARGE
    return float(2 * layers * total)


def _release_note(job: FitJob, all_logits: bool, upcast: bool, tuple_cache: bool) -> str:
    release = job.transformers_version or f"{CURRENT_TRANSFORMERS[0]}.{CURRENT_TRANSFORMERS[1]}+"
    note = f"transformers {release}: " + (
        "logits of every prompt position" + (" upcast to fp32" if upcast else "") if all_logits else
        "logits of the last position only, fp32 for sampling")
    return note + ("; the KV cache as tuples, copied whole by each decode step" if tuple_cache else "")


def graph_bytes(arch: LlmArch, n_ctx: int, n_ub: int, flash: bool, bpw: float) -> tuple[float, float]:
    """llama.cpp compute buffer (full offload, partial offload), Ollama's GraphSize formula for llama.

    `bpw` is the layers' bits per weight (Ollama hard-codes 4.5, i.e. h*h*9/16 bytes); without flash attention the
    n_ctx x n_head scores per ubatch token dominate, with it only the mask remains.
    """
    h, V, nh = arch.hidden, arch.vocab, arch.n_heads
    scores = 0 if flash else n_ctx * nh
    full = max(4 * n_ub * (1 + 4 * h + n_ctx + scores), 4 * n_ub * (h + V))
    # partial offload: CPU-resident weights of big-batch matmuls are copied over (the h*h and h*V terms)
    partial = 4 * n_ub * h + max(
        4 * n_ub * (1 + h + max(n_ctx, h)) + h * h * bpw / 8
        + 4 * n_ctx * ((0 if flash else n_ub * nh) + arch.head_dim * arch.n_kv_heads),
        4 * n_ub * (h + V) + h * V * 105 / 128)  # output.weight copied in Q6_K: 210 B per 256 (_GGML)
    return float(full), float(partial)


def _llama_cpp(arch: LlmArch, job: FitJob, card: GpuSpec | None, ollama: bool, notes: list[str]) -> Estimate:
    runtime = "ollama" if ollama else "llama.cpp"
    fmt = parse_quant(arch, job, card, runtime)
    if fmt.kind != "gguf":
        raise ConfigError(f"{runtime} runs GGUF files; --quant {job.quant} is a transformers format",
                          "pass a .gguf file or a GGUF type such as --quant q4_k_m, or use --runtime transformers")
    flash = job.attention == "flash"
    if job.kv_dtype.lower() in ("q8_0", "q4_0") and not flash:
        raise ConfigError(f"llama.cpp needs flash attention for a {job.kv_dtype} V cache",
                          "add --attention flash, or use --kv-dtype f16")
    wb: WeightBytes = weight_bytes(arch, fmt)
    L = arch.n_layers
    n_ctx = job.ctx * job.batch  # parallel sequences (-np) split one context
    n_ub = min(LLAMA_CPP_UBATCH, n_ctx)
    kv_layer = n_ctx * kv_bytes_per_token(arch, job.kv_dtype) / L
    bpw = 8 * sum(wb.layers) / (L * sum(lin.d_in * lin.d_out for lin in linears(arch)))
    full, partial = graph_bytes(arch, n_ctx, n_ub, flash, bpw)
    head_gpu = wb.output + (wb.embed if arch.tied_embeddings else 0)  # a tied head is copied next to the layers
    pool = n_ub * max(arch.hidden, arch.intermediate) * 4.0  # CUDA pool: f16 copies of matmul inputs/outputs

    def gpu(n: int) -> tuple[float, float, float]:
        k = min(n, L)
        w = sum(wb.layers[L - k:]) + (head_gpu + wb.other if n > L else 0)
        return w, k * kv_layer, full if n > L else partial

    if job.gpu_layers is not None:
        n = min(job.gpu_layers, L + 1)
    elif card is None:
        n = L + 1
    elif ollama:
        n = _ollama_layers(wb, kv_layer, head_gpu, full, partial, card, job, L)
    else:
        budget = (card.usable_gib - job.margin_gib - CUDA_CONTEXT_GIB) * GIB - pool
        n = max([k for k in range(L + 2) if sum(gpu(k)) <= budget], default=0)
    w, kv, graph = gpu(n)
    cpu = wb.total - (w - (wb.embed if arch.tied_embeddings and n > L else 0)) + (L - min(n, L)) * kv_layer
    notes += [f"{runtime}: {fmt.name} weights ({gib(wb.total):.2f} GiB, "
              f"{8 * wb.total / n_params(arch):.2f} bits/weight)",
              f"{min(n, L)}/{L} layers on the GPU" + (" + output layer" if n > L else "")
              + ("" if job.gpu_layers is not None else " (as many as fit)" if not ollama else " (Ollama's estimate)"),
              "token embedding stays in host RAM (llama.cpp)",
              f"n_ctx {n_ctx}, n_ubatch {n_ub}, KV {job.kv_dtype}: {gib(kv_layer * L) * 1024:.0f} MiB for all layers",
              f"flash attention {'on' if flash else 'off'}: compute buffer {graph / 2**20:.0f} MiB"
              + ("" if n > L else " (partial offload: CPU weights of big matmuls are copied in)"),
              f"CUDA pool for matmul conversions ~{pool / 2**20:.0f} MiB (in slack)", lazy_note(runtime)]
    if ollama:
        notes.append(f"Ollama reserves {OLLAMA_MIN_MIB} MiB + one spare layer + the graph when it counts layers")
    est = Estimate({"weights": gib(w), "kv_cache": gib(kv), "runtime": gib(graph)}, slack_gib=gib(pool),
                   context_gib=CUDA_CONTEXT_GIB, cpu_gib=gib(cpu), gpu_layers=n, assumptions=notes)
    if n > L:
        _decode_speed(est, card, w + kv_layer * L / 2, job.batch, runtime)
    else:
        est.throughput_note = "partial offload: decode speed is bound by host RAM bandwidth (not estimated)"
    return est


def _ollama_layers(wb: WeightBytes, kv_layer: float, head: float, full: float, partial: float, card: GpuSpec,
                   job: FitJob, L: int) -> int:
    """Ollama's EstimateGPULayers (llm/memory.go) on one GPU whose free memory is the card less the margin."""
    free = (card.usable_gib - job.margin_gib) * GIB
    layer = wb.layers[0] + kv_layer
    graph = max(full, partial)
    used = OLLAMA_MIN_MIB * 2**20 + layer  # minimum memory + one layer as a buffer
    if free < used + graph + layer:
        return 0
    n = 0
    for i in range(L):
        if free > used + graph + wb.layers[i] + kv_layer:
            used += wb.layers[i] + kv_layer
            n += 1
    if n == L and free > used + graph + head:
        n += 1
    return n


def _vllm(arch: LlmArch, job: FitJob, card: GpuSpec | None, notes: list[str]) -> Estimate:
    fmt = parse_quant(arch, job, card, "vllm")
    if fmt.kind in ("gguf", "int8"):
        raise ConfigError(f"this planner does not model vLLM with {fmt.name} weights",
                          "use fp16/bf16, awq, gptq or nf4 (bitsandbytes) with vLLM, or --runtime llama.cpp")
    a, wb = fmt.act_bytes, weight_bytes(arch, fmt)
    kvt = kv_bytes_per_token(arch, job.kv_dtype, a)
    T = job.max_num_batched_tokens or VLLM_BATCHED_TOKENS
    forward = T * a * (2 * arch.hidden + 3 * arch.intermediate) + wb.dequant  # the MLP of T tokens
    # the sort (above), with the forward's T hidden states still held (V0 execute_model l.1654-1697; V1 0.8.5 keeps
    # only the sampled rows, l.1509: at most T x hidden x 2 B high there)
    sampler = T * a * arch.hidden + VLLM_MAX_SEQS * arch.vocab * (a + 4 + VLLM_SORT_BYTES_PER_LOGIT)
    act = max(forward, sampler)
    graphs = VLLM_CUDA_GRAPH_GIB * GIB
    needed = job.batch * job.ctx * kvt
    pool = needed
    notes += [f"vLLM: {fmt.name} weights ({gib(wb.total):.2f} GiB)",
              f"profiling run: the forward of {T} batched tokens {gib(forward):.2f} GiB, then the sampler's sort of "
              f"{VLLM_MAX_SEQS} x {arch.vocab} fp32 logits {gib(sampler):.2f} GiB; the larger is the activation peak",
              f"CUDA graphs {VLLM_CUDA_GRAPH_GIB} GiB (0 with enforce_eager)"]
    if card is not None:
        pool = job.gpu_memory_utilization * card.usable_gib * GIB - CUDA_CONTEXT_GIB * GIB - wb.total - act - graphs
        tokens = max(int(pool // kvt) // 16 * 16, 0)  # blocks of 16 tokens
        notes.append(f"gpu_memory_utilization {job.gpu_memory_utilization}: KV block pool {gib(max(pool, 0)):.2f} GiB"
                     f" = {tokens} tokens ({tokens / job.ctx:.1f} sequences of {job.ctx})")
        if pool < needed:
            notes.append(f"the pool is below the {gib(needed):.2f} GiB that {job.batch} x {job.ctx} tokens need: "
                         "vLLM refuses to start; raise gpu_memory_utilization or lower the context")
    est = Estimate({"weights": gib(wb.total), "kv_cache": gib(max(pool, needed)), "activations": gib(act),
                    "runtime": VLLM_CUDA_GRAPH_GIB}, slack_gib=0.0, context_gib=CUDA_CONTEXT_GIB, assumptions=notes)
    _decode_speed(est, card, wb.total + job.batch * job.ctx / 2 * kvt, job.batch, "vLLM")
    return est


# The KV cache types each runtime offers, in FitJob's spelling: llama.cpp's --cache-type-k/v (f32, f16, bf16, q8_0,
# q4_0 ...; fp8 is none of them), vLLM's --kv-cache-dtype (auto = the model's, fp8), transformers' dynamic cache in
# a float dtype (its quantized caches are not modelled).
KV_TYPES = {"llama.cpp": ("f16", "bf16", "f32", "q8_0", "q4_0"), "ollama": ("f16", "q8_0", "q4_0"),
            "vllm": ("f16", "bf16", "fp8"), "transformers": ("f16", "bf16", "f32"), "autoawq": ("f16",)}


def estimate(arch: LlmArch, job: FitJob, card: GpuSpec | None) -> Estimate:
    """Inference memory of an LLM/VLM on the job's runtime.

    Raises:
        ConfigError: the runtime is not an LLM runtime, or the format does not run on it.
    """
    runtime = runtime_of(arch, job)
    kv_types = KV_TYPES.get(runtime, KV_TYPES["transformers"])
    if job.kv_dtype not in kv_types:
        raise ConfigError(f"--kv-dtype {job.kv_dtype} is not a KV cache type {runtime} has",
                          f"use {', '.join(kv_types)} with {runtime}")
    notes: list[str] = []
    if runtime in ("llama.cpp", "ollama"):
        est = _llama_cpp(arch, job, card, runtime == "ollama", notes)
    elif runtime == "vllm":
        est = _vllm(arch, job, card, notes)
    elif runtime in ("transformers", "autoawq"):
        est = _transformers(arch, job, card, notes)
    else:
        raise ConfigError(f"--runtime {runtime} does not run LLMs",
                          "use transformers, llama.cpp, vllm or ollama (or auto)")
    est.assumptions.append(context_note())
    return est

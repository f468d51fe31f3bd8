"""How LLM/VLM tensors are stored, and the bytes they take: weight formats and KV cache dtypes.

Weights are counted tensor by tensor from the architecture (or taken from the file when one was read):
- 16/32-bit: every parameter at its width.
- bitsandbytes NF4/FP4 (transformers `load_in_4bit`): the block linears at 4 bits + one absmax per 64 weights,
  fp32 (4 B) or, with double quantization, 8-bit + one fp32 per 256 absmax (QLoRA paper, Dettmers et al. 2023,
  section 2: 32/64 = 0.5 bit vs 8/64 + 32/(64*256) = 0.127 bit); embeddings, lm_head, norms and biases stay 16-bit
  (transformers keeps the output head unconverted: `get_keys_to_not_convert`).
- bitsandbytes LLM.int8: int8 block linears + an fp32 scale per output row; input-feature outliers (|x| > 6) run in
  fp16 from a sub-matrix kept per layer (Dettmers et al. 2022 find them in ~7 feature dimensions at 6.7B+).
- GPTQ/AWQ 4-bit, group 128: packed int4 weights + an fp16 scale and a packed 4-bit zero per group of 128 inputs.
- LitGPT under Lightning Fabric (`stack litgpt`, training and generate): the head is its own tensor even where the
  checkpoint ties it (litgpt's GPT has separate `wte` and `lm_head`; convert_hf_checkpoint maps both), and
  `BitsandbytesPrecision` swaps every `torch.nn.Linear` for its bitsandbytes class while the model is built
  (lightning fabric/plugins/precision/bitsandbytes.py `module_init_context`), so the head is quantized like the
  blocks. Lightning quantizes from fp16 (`weight.contiguous().to(device, dtype=torch.half)` before `quantize_4bit`),
  so bitsandbytes dequantizes to fp16 and MatMul4Bit's `.to(A.dtype)` makes a second copy under bf16 compute: the
  largest 4-bit weight, the head, is held at 4 B per weight (bitsandbytes 0.42.0 autograd/_functions.py:516). Its
  int8 load re-quantizes each weight from an fp16 copy with `double_quant`'s two int8 outputs while the old int8
  weight is alive: 4 B per weight of the largest (the head, loaded first).
- GGUF: each tensor at its ggml type; for a catalog model the type of each tensor follows llama.cpp's
  `llama_tensor_get_type` (Q4_K_M: attn_v and ffn_down of every third layer and the first/last eighth in Q6_K,
  output in Q6_K), which reproduces the 4.84-4.89 bits per weight of measured.md rows 12-13.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from onecard.core.errors import ConfigError
from onecard.fit.catalog import LlmArch, block_small_params, linears, norm_params
from onecard.fit.job import FitJob

if TYPE_CHECKING:
    from onecard.core.gpus import GpuSpec

__all__ = ["WeightFormat", "WeightBytes", "parse_quant", "weight_bytes", "kv_bytes_per_token", "GGUF_BITS",
           "GPTQ_AWQ_BYTES_PER_WEIGHT", "LIGHTNING_NOTE"]

# ggml block sizes (elements, bytes) of the types a GGUF file mixes (ggml-common.h)
_GGML = {"F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q8_0": (32, 34), "Q6_K": (256, 210), "Q5_K": (256, 176),
         "Q4_K": (256, 144), "Q5_0": (32, 22), "Q5_1": (32, 24), "Q4_0": (32, 18), "Q4_1": (32, 20),
         "Q3_K": (256, 110), "Q2_K": (256, 84)}
# file type -> (base type, attn_v/ffn_down type on "more bits" layers, output type)  [llama-quant.cpp]
_GGUF_SCHEMES = {"F32": ("F32", "F32", "F32"), "F16": ("F16", "F16", "F16"), "BF16": ("BF16", "BF16", "BF16"),
                 "Q8_0": ("Q8_0", "Q8_0", "Q8_0"), "Q6_K": ("Q6_K", "Q6_K", "Q6_K"), "Q5_K_M": ("Q5_K", "Q6_K", "Q6_K"),
                 "Q5_K_S": ("Q5_K", "Q5_K", "Q6_K"), "Q4_K_M": ("Q4_K", "Q6_K", "Q6_K"),
                 "Q4_K_S": ("Q4_K", "Q4_K", "Q6_K"), "Q5_0": ("Q5_0", "Q5_0", "Q6_K"), "Q5_1": ("Q5_1", "Q5_1", "Q6_K"),
                 "Q4_0": ("Q4_0", "Q4_0", "Q6_K"), "Q4_1": ("Q4_1", "Q4_1", "Q6_K"), "Q3_K_M": ("Q3_K", "Q4_K", "Q6_K"),
                 "Q2_K": ("Q3_K", "Q3_K", "Q6_K")}
_K_FALLBACK = {"Q6_K": "Q8_0", "Q5_K": "Q5_1", "Q4_K": "Q5_0", "Q3_K": "Q4_0", "Q2_K": "Q4_0"}  # IQ4_NL ~ Q4_0 size
GGUF_BITS = {name: 8 * b / n for name, (n, b) in _GGML.items()}
# bytes per KV element: the quantized caches are ggml blocks of 32 (_GGML: Q8_0 34 B, Q4_0 18 B)
_KV_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
GPTQ_AWQ_BYTES_PER_WEIGHT = 0.5 + 2 / 128 + 0.5 / 128  # int4 + an fp16 scale and a packed 4-bit zero per 128 inputs
LIGHTNING_NOTE = ("LitGPT under Lightning Fabric: the head is its own tensor, quantized with the blocks (from an "
                  "fp16 copy) under a bitsandbytes format")
_BNB_ABSMAX = {False: 4 / 64, True: 1 / 64 + 4 / (64 * 256)}  # bytes per weight of the quantization constants


@dataclass(frozen=True)
class WeightFormat:
    """How weights are stored. `act_bytes` is the width activations and 16-bit leftovers run in."""

    kind: Literal["dense", "bnb4", "int8", "gptq", "awq", "gguf"]
    name: str
    act_bytes: int = 2
    weight_bytes: int = 2  # dense: bytes per parameter
    double_quant: bool = False
    compute_bytes: int = 2  # bnb 4-bit compute dtype (bnb_4bit_compute_dtype)

    @property
    def quantized(self) -> bool:
        return self.kind != "dense"


@dataclass(frozen=True)
class WeightBytes:
    """Bytes of the weights by where llama.cpp can put them; the transformers runtimes hold all of it."""

    layers: tuple[float, ...]  # each repeating block
    embed: float  # token embedding (llama.cpp keeps it in host RAM)
    output: float  # final norm + head as stored (no head when tied: llama.cpp then copies the embedding to the GPU)
    other: float = 0.0  # vision tower + projector, learned positions
    dequant: float = 0.0  # largest quantized linear at 16 bits: the buffer a dequantizing matmul allocates

    @property
    def total(self) -> float:
        return sum(self.layers) + self.embed + self.output + self.other


def parse_quant(arch: LlmArch, job: FitJob, card: GpuSpec | None, runtime: str) -> WeightFormat:
    """The weight format a job names; "auto" becomes the file's own format, NF4 + double quant for QLoRA, Q4_K_M
    for llama.cpp/Ollama from a catalog name, else bf16 (fp16 on cards without bf16).

    Accepted: fp32 fp16 bf16 f16 fp8; int8 (bnb.int8, llm.int8); nf4 fp4 with -dq for double quantization and an
    optional compute dtype after a colon (nf4-dq:bf16, fp4:fp32; bnb. prefixes as in LitGPT); gptq awq; GGUF types.

    Raises:
        ConfigError: an unknown format.
    """
    q = job.quant.strip().lower().removeprefix("bnb.")
    gguf_runtime = runtime in ("llama.cpp", "ollama")
    wf = arch.weights_file
    if q == "auto":
        if wf is not None and wf.format == "gguf":
            return WeightFormat("gguf", wf.quant)
        if wf is not None and wf.quant in ("gptq", "awq"):
            return WeightFormat(wf.quant, wf.quant)  # type: ignore[arg-type]
        if job.job == "train" and job.method == "qlora":
            q = "nf4-dq"
        elif gguf_runtime:
            q = "q4_k_m"
        else:
            q = "bf16" if card is None or card.bf16 else "fp16"
    q, _, compute = q.partition(":")
    compute_bytes = {"": 2, "bf16": 2, "fp16": 2, "f16": 2, "fp32": 4, "f32": 4}.get(compute)
    if compute_bytes is None:
        raise ConfigError(f"unknown compute dtype {compute!r} in --quant {job.quant}", "use :bf16, :fp16 or :fp32")
    if gguf_runtime or (q.startswith("q") and q.upper() in _GGUF_SCHEMES):
        name = {"fp16": "F16", "fp32": "F32"}.get(q, q.upper())
        if name not in _GGUF_SCHEMES and not (wf is not None and wf.format == "gguf" and name == wf.quant):
            raise ConfigError(f"unknown GGUF type {job.quant!r}", f"use one of {', '.join(sorted(_GGUF_SCHEMES))}")
        return WeightFormat("gguf", name)
    if q in ("fp32", "f32", "float32"):
        return WeightFormat("dense", "fp32", act_bytes=4, weight_bytes=4)
    if q in ("fp16", "f16", "float16", "half", "bf16", "bfloat16"):
        return WeightFormat("dense", "bf16" if q.startswith("b") else "fp16")
    if q in ("fp8", "float8"):  # FP8 (e4m3) checkpoints: 1 byte per weight, 16-bit activations (vLLM, transformers)
        return WeightFormat("dense", "fp8", weight_bytes=1)
    if q in ("int8", "llm.int8", "8bit", "int8-training"):
        return WeightFormat("int8", "int8")
    m = re.fullmatch(r"(nf4|fp4)(-dq)?", q)
    if m:
        return WeightFormat("bnb4", q, double_quant=bool(m.group(2)), compute_bytes=compute_bytes)
    if q in ("gptq", "awq"):
        return WeightFormat(q, q)  # type: ignore[arg-type]
    raise ConfigError(f"unknown weight format --quant {job.quant!r}",
                      "use fp32, fp16, bf16, fp8, int8, nf4, nf4-dq, fp4, gptq, awq, or a GGUF type such as q4_k_m")


def _use_more_bits(i: int, n: int) -> bool:
    """llama.cpp `use_more_bits`: the first and last eighth of the layers and every third layer between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _gguf_bytes(n: int, ggml_type: str, row: int) -> float:
    # K-quants need rows divisible by 256; llama.cpp falls back to a 32-block type (Q5_0/Q8_0 here) otherwise.
    if _GGML[ggml_type][0] == 256 and row % 256:
        ggml_type = _K_FALLBACK[ggml_type]
    block, nbytes = _GGML[ggml_type]
    return n / block * nbytes


def _gguf_weights(arch: LlmArch, ftype: str) -> WeightBytes:
    base, more, out_type = _GGUF_SCHEMES[ftype]
    if arch.family == "falcon" and ftype not in ("F32", "F16", "BF16", "Q8_0"):
        out_type = "Q8_0"  # llama-quant.cpp: Falcon's output is Q8_0
    norm = arch.hidden * 4 * (2 if arch.norm == "layer" else 1)
    layers = []
    for i in range(arch.n_layers):
        total = float(norm * arch.norms_per_layer)
        for lin in linears(arch):
            t = more if lin.kind in ("v", "down") and _use_more_bits(i, arch.n_layers) else base
            if lin.kind == "qkv" and ftype in ("Q4_K_M", "Q5_K_M"):
                t = "Q5_K" if ftype == "Q4_K_M" else "Q6_K"  # fused attn_qkv gets one step more
            total += _gguf_bytes(lin.d_in * lin.d_out, t, lin.d_in)
        layers.append(total)
    embed = _gguf_bytes(arch.vocab * arch.hidden, out_type if arch.tied_embeddings else base, arch.hidden)
    head = 0.0 if arch.tied_embeddings else _gguf_bytes(arch.vocab * arch.hidden, out_type, arch.hidden)
    output = arch.hidden * 4 + head
    return WeightBytes(tuple(layers), embed, output, _other_params(arch) * 2.0)


def _other_params(arch: LlmArch) -> int:
    vision = arch.vision.n_params + arch.vision.projector_params if arch.vision else 0
    return vision + arch.learned_positions * arch.hidden


def weight_bytes(arch: LlmArch, fmt: WeightFormat, lightning: bool = False, bf16: bool = True) -> WeightBytes:
    """Bytes of the weights in a format; from the file itself when the format is the file's own. `lightning`: LitGPT
    under Lightning Fabric (an untied, quantized head, fp16 quantization; module docstring), whose compute dtype is
    bf16 where the card has it (`bf16`)."""
    wf = arch.weights_file
    if wf is not None and fmt.name.lower() == wf.quant.lower():
        lin16 = max(lin.d_in * lin.d_out for lin in linears(arch)) * 2.0
        return WeightBytes(tuple(float(b) for b in wf.layer_bytes), float(wf.embed_bytes), float(wf.output_bytes),
                           float(wf.other_bytes), dequant=lin16 if fmt.kind in ("gptq", "awq") else 0.0)
    if fmt.kind == "gguf":
        return _gguf_weights(arch, fmt.name)
    embed = arch.vocab * arch.hidden
    head = 0 if arch.tied_embeddings and not lightning else embed
    output = head + norm_params(arch)
    block_lin = [lin.d_in * lin.d_out for lin in linears(arch)]
    small = block_small_params(arch)
    if fmt.kind == "dense":
        b = fmt.weight_bytes
        layer = float((sum(block_lin) + small) * b)
        return WeightBytes((layer,) * arch.n_layers, embed * b, output * b, _other_params(arch) * b)
    if fmt.kind == "bnb4":
        per_w = 0.5 + _BNB_ABSMAX[fmt.double_quant]
    elif fmt.kind == "int8":
        per_w = 1.0
    else:  # gptq/awq int4, group 128
        per_w = GPTQ_AWQ_BYTES_PER_WEIGHT
    quant = sum(block_lin) * per_w
    if fmt.kind == "int8":  # fp32 row scales + fp16 outlier sub-matrices (7 input features per linear)
        quant += sum(lin.d_out * (4 + 7 * 2) for lin in linears(arch))
    layer = quant + small * 2
    if lightning and fmt.kind in ("bnb4", "int8"):  # the head quantized like the blocks, fp16 staging (see above)
        largest = max(embed, *block_lin)
        out_bytes = head * per_w + (arch.vocab * 4 if fmt.kind == "int8" else 0) + norm_params(arch) * 2.0
        staging = largest * (4.0 if fmt.kind == "int8" or (bf16 and fmt.compute_bytes == 2) else
                             2.0 + (4 if fmt.compute_bytes == 4 else 0))
        return WeightBytes((layer,) * arch.n_layers, embed * 2.0, out_bytes, _other_params(arch) * 2.0,
                           dequant=staging)
    # the prefill dequantizes one weight at a time to 16 bits (bnb, exllama/marlin temp buffers); bnb with an fp32
    # compute dtype then casts that copy to fp32, and both are alive in the matmul
    dequant = max(block_lin) * (2.0 + (4 if fmt.kind == "bnb4" and fmt.compute_bytes == 4 else 0))
    return WeightBytes((layer,) * arch.n_layers, embed * 2.0, output * 2.0, _other_params(arch) * 2.0,
                       dequant=dequant if fmt.kind != "int8" else 0.0)


def kv_bytes_per_token(arch: LlmArch, kv_dtype: str, act: int = 2) -> float:
    """KV cache bytes per token: 2 (K and V) x layers x KV heads x head_dim x bytes per element (GQA-aware).

    Llama-2-7B (32 KV heads) is 512 KiB/token in f16, Llama-3-8B (8 KV heads) 128 KiB/token: the llama.cpp logs
    of measured.md rows 12-13 (1024 MiB at n_ctx 2048, 64 MiB at 512).
    """
    dtype = kv_dtype.lower()
    if dtype not in _KV_BYTES:
        raise ConfigError(f"unknown KV cache dtype {kv_dtype!r}", f"use one of {', '.join(_KV_BYTES)}")
    per = _KV_BYTES[dtype] if dtype not in ("f16", "bf16", "fp16") else float(act)
    return 2 * arch.n_layers * arch.n_kv_heads * arch.head_dim * per

"""LLM and VLM architecture facts, each read from the model's Hugging Face config.json (the `source` field).

Only dimensions live here; parameter counts are derived from them (`n_params`) and checked against the published
counts in tests/unit/fit/test_catalog.py. A local config.json, model folder or GGUF file becomes the same `LlmArch`
through `onecard.fit.readers`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = ["LlmArch", "VisionTower", "WeightsFile", "Linear", "CATALOG", "find", "names", "n_params", "linears",
           "block_small_params", "norm_params", "normalize", "hf_config"]

Norm = Literal["rms", "layer"]


@dataclass(frozen=True)
class VisionTower:
    """The image side of a LLaVA-style VLM: a frozen ViT and the projector into the LLM's embedding space."""

    name: str
    n_params: int  # ViT incl. patch/position embeddings and norms
    projector_params: int
    hidden: int
    image_tokens: int  # tokens one image adds to the LLM context (patches; LLaVA drops the CLS token)


@dataclass(frozen=True)
class WeightsFile:
    """What the files on disk say: real per-tensor sizes (GGUF, safetensors), so weights need no guessing.

    layer_bytes holds the bytes of each repeating block (blk.N / model.layers.N), in order; embed_bytes the token
    embedding (llama.cpp keeps it in host memory), output_bytes the output norm + head, other_bytes the rest.
    """

    path: str
    format: Literal["gguf", "safetensors"]
    quant: str  # GGUF file type (Q4_K_M...) or the dominant safetensors dtype (bf16, f16, f32) or config's quant
    layer_bytes: tuple[int, ...]
    embed_bytes: int
    output_bytes: int
    other_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(self.layer_bytes) + self.embed_bytes + self.output_bytes + self.other_bytes


@dataclass(frozen=True)
class LlmArch:
    """A decoder-only transformer (optionally with a vision tower), by the numbers of its config.json."""

    key: str
    name: str
    n_layers: int
    hidden: int
    intermediate: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    max_ctx: int
    tied_embeddings: bool
    gated_mlp: bool = True  # SwiGLU/GeGLU (gate, up, down) vs plain GELU MLP (fc, proj)
    norm: Norm = "rms"  # LayerNorm has a bias
    norm_bias: bool = True  # LayerNorm(bias=False) (nanoGPT's bias=False, onecard.tinylm) has a weight only
    norms_per_layer: int = 2  # Gemma 2/3: 4 (pre/post attention and MLP); Falcon-7B parallel block: 1
    qkv_bias: bool = False  # Qwen2
    linear_bias: bool = False  # every linear has a bias (GPTBigCode)
    fused_qkv: bool = False  # one qkv_proj module (Phi-3, Falcon, GPTBigCode c_attn): LoRA targets it whole
    fused_gate_up: bool = False  # Phi-3 gate_up_proj
    qk_norm: bool = False  # Gemma 3 q_norm/k_norm (head_dim each)
    learned_positions: int = 0  # GPT-2 style wpe rows (GPTBigCode n_positions)
    vision: VisionTower | None = None
    family: str = "llama"  # model_type of the config
    aliases: tuple[str, ...] = ()
    source: str = ""
    weights_file: WeightsFile | None = field(default=None, compare=False)

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim


@dataclass(frozen=True)
class Linear:
    """One linear module of a block, as PEFT sees it: `name` is the module name LoRA targets.

    `reads` names the tensor it takes as input (attn_in: the attention norm output; attn_out: the attention output;
    mlp_in: the MLP norm output; mlp_act: the activation product fed to the down projection).
    """

    name: str
    d_in: int
    d_out: int
    reads: Literal["attn_in", "attn_out", "mlp_in", "mlp_act"]
    kind: Literal["q", "k", "v", "qkv", "o", "gate", "up", "gate_up", "down"]


@functools.lru_cache(maxsize=256)
def linears(arch: LlmArch) -> tuple[Linear, ...]:
    """The linear modules of one block (cached: `--solve` plans a model a hundred times over)."""
    h, f = arch.hidden, arch.intermediate
    mlp_in: Literal["attn_in", "mlp_in"] = "attn_in" if arch.norms_per_layer == 1 else "mlp_in"  # parallel block
    out: list[Linear] = []
    if arch.fused_qkv:
        out.append(Linear("qkv_proj", h, arch.q_dim + 2 * arch.kv_dim, "attn_in", "qkv"))
    else:
        out += [Linear("q_proj", h, arch.q_dim, "attn_in", "q"), Linear("k_proj", h, arch.kv_dim, "attn_in", "k"),
                Linear("v_proj", h, arch.kv_dim, "attn_in", "v")]
    out.append(Linear("o_proj", arch.q_dim, h, "attn_out", "o"))
    if arch.gated_mlp and arch.fused_gate_up:
        out.append(Linear("gate_up_proj", h, 2 * f, mlp_in, "gate_up"))
    elif arch.gated_mlp:
        out += [Linear("gate_proj", h, f, mlp_in, "gate"), Linear("up_proj", h, f, mlp_in, "up")]
    else:
        out.append(Linear("up_proj", h, f, mlp_in, "up"))
    out.append(Linear("down_proj", f, h, "mlp_act", "down"))
    return tuple(out)


def norm_params(arch: LlmArch) -> int:
    """Parameters of one norm: RMSNorm has a weight, LayerNorm a weight and a bias."""
    return arch.hidden * (2 if arch.norm == "layer" and arch.norm_bias else 1)


def block_small_params(arch: LlmArch) -> int:
    """Parameters of a block outside its linear weights: norms, biases, Gemma 3's q/k norms."""
    small = arch.norms_per_layer * norm_params(arch) + (2 * arch.head_dim if arch.qk_norm else 0)
    if arch.linear_bias:
        small += sum(lin.d_out for lin in linears(arch))
    elif arch.qkv_bias:
        small += arch.q_dim + 2 * arch.kv_dim
    return small


@functools.lru_cache(maxsize=256)
def n_params(arch: LlmArch, with_vision: bool = True) -> int:
    """Parameters derived from the dimensions (weights, biases, norms, embeddings, head, vision tower)."""
    per_layer = sum(lin.d_in * lin.d_out for lin in linears(arch)) + block_small_params(arch)
    embed = arch.vocab * arch.hidden
    total = arch.n_layers * per_layer + embed * (1 if arch.tied_embeddings else 2) + norm_params(arch)
    total += arch.learned_positions * arch.hidden
    if with_vision and arch.vision is not None:
        total += arch.vision.n_params + arch.vision.projector_params
    return total


def _hf(repo: str) -> str:
    return f"https://huggingface.co/{repo}/blob/main/config.json"


_LLAMA2_7B: dict[str, Any] = dict(n_layers=32, hidden=4096, intermediate=11008, n_heads=32, n_kv_heads=32, head_dim=128,
                  vocab=32000, max_ctx=4096, tied_embeddings=False)
_LLAMA3_8B: dict[str, Any] = dict(n_layers=32, hidden=4096, intermediate=14336, n_heads=32, n_kv_heads=8, head_dim=128,
                  vocab=128256, tied_embeddings=False)
_MISTRAL_7B: dict[str, Any] = dict(n_layers=32, hidden=4096, intermediate=14336, n_heads=32, n_kv_heads=8, head_dim=128,
                   max_ctx=32768, tied_embeddings=False, family="mistral")
_QWEN25_7B: dict[str, Any] = dict(n_layers=28, hidden=3584, intermediate=18944, n_heads=28, n_kv_heads=4, head_dim=128,
                  vocab=152064, tied_embeddings=False, qkv_bias=True, family="qwen2")
_PHI3_MINI: dict[str, Any] = dict(n_layers=32, hidden=3072, intermediate=8192, n_heads=32, n_kv_heads=32, head_dim=96,
                  vocab=32064, tied_embeddings=False, fused_qkv=True, fused_gate_up=True, family="phi3")
_STARCODER: dict[str, Any] = dict(n_layers=40, hidden=6144, intermediate=24576, n_heads=48, n_kv_heads=1, head_dim=128,
                  vocab=49152, max_ctx=8192, tied_embeddings=True, gated_mlp=False, norm="layer",
                  linear_bias=True, fused_qkv=True, learned_positions=8192, family="gpt_bigcode")

# CLIP ViT-L/14 at 336 px (openai/clip-vit-large-patch14-336): 24 layers, hidden 1024, MLP 4096, 577 positions.
# Params: patch conv 3*14*14*1024 + class emb 1024 + positions 577*1024 + pre/post LN + 24 blocks of
# (4 biased 1024x1024 attention linears, 1024<->4096 biased MLP, 2 LNs) = 303,507,456.
# LLaVA-1.5 projector mlp2x_gelu: 1024->4096->4096 with biases = 20,979,712.
_CLIP_L_336 = VisionTower("CLIP ViT-L/14-336", n_params=303_507_456, projector_params=20_979_712, hidden=1024,
                          image_tokens=576)

CATALOG: tuple[LlmArch, ...] = (
    LlmArch("llama-2-7b", "Llama 2 7B", **_LLAMA2_7B,
            aliases=("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-chat-hf", "llama2:7b", "llama2"),
            source=_hf("meta-llama/Llama-2-7b-hf")),
    LlmArch("llama-2-13b", "Llama 2 13B", n_layers=40, hidden=5120, intermediate=13824, n_heads=40, n_kv_heads=40,
            head_dim=128, vocab=32000, max_ctx=4096, tied_embeddings=False,
            aliases=("meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-13b-chat-hf", "llama2:13b"),
            source=_hf("meta-llama/Llama-2-13b-hf")),
    LlmArch("llama-3-8b", "Llama 3 8B", **_LLAMA3_8B, max_ctx=8192,
            aliases=("meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-8B-Instruct", "llama3:8b", "llama3"),
            source=_hf("meta-llama/Meta-Llama-3-8B")),
    LlmArch("llama-3.1-8b", "Llama 3.1 8B", **_LLAMA3_8B, max_ctx=131072,
            aliases=("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Meta-Llama-3.1-8B",
                     "meta-llama/Meta-Llama-3.1-8B-Instruct", "llama3.1:8b", "llama3.1"),
            source=_hf("meta-llama/Llama-3.1-8B")),
    LlmArch("mistral-7b-v0.1", "Mistral 7B v0.1", **_MISTRAL_7B, vocab=32000,
            aliases=("mistral-7b", "mistralai/Mistral-7B-v0.1", "mistralai/Mistral-7B-Instruct-v0.1",
                     "mistralai/Mistral-7B-Instruct-v0.2"), source=_hf("mistralai/Mistral-7B-v0.1")),
    LlmArch("mistral-7b-v0.3", "Mistral 7B v0.3", **_MISTRAL_7B, vocab=32768,
            aliases=("mistralai/Mistral-7B-v0.3", "mistralai/Mistral-7B-Instruct-v0.3", "mistral:7b", "mistral"),
            source=_hf("mistralai/Mistral-7B-v0.3")),
    # Falcon-7B: parallel attention + MLP off one LayerNorm, multi-query (1 KV head), no linear biases, tied head.
    LlmArch("falcon-7b", "Falcon 7B", n_layers=32, hidden=4544, intermediate=18176, n_heads=71, n_kv_heads=1,
            head_dim=64, vocab=65024, max_ctx=2048, tied_embeddings=True, gated_mlp=False, norm="layer",
            norms_per_layer=1, fused_qkv=True, family="falcon",
            aliases=("tiiuae/falcon-7b", "tiiuae/falcon-7b-instruct", "falcon:7b"), source=_hf("tiiuae/falcon-7b")),
    LlmArch("qwen2.5-7b", "Qwen2.5 7B", **_QWEN25_7B, max_ctx=131072,
            aliases=("Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-7B-Instruct", "qwen2.5:7b", "qwen2.5"),
            source=_hf("Qwen/Qwen2.5-7B")),
    # Qwen2 7B has the Qwen2.5 7B shapes; the base model's config says 131072 positions, the Instruct one 32768
    LlmArch("qwen2-7b", "Qwen2 7B", **_QWEN25_7B, max_ctx=131072, aliases=("Qwen/Qwen2-7B",),
            source=_hf("Qwen/Qwen2-7B")),
    LlmArch("qwen2-7b-instruct", "Qwen2 7B Instruct", **_QWEN25_7B, max_ctx=32768,
            aliases=("Qwen/Qwen2-7B-Instruct", "qwen2:7b", "qwen2"), source=_hf("Qwen/Qwen2-7B-Instruct")),
    LlmArch("qwen2.5-coder-7b", "Qwen2.5-Coder 7B", **_QWEN25_7B, max_ctx=32768,
            aliases=("Qwen/Qwen2.5-Coder-7B", "Qwen/Qwen2.5-Coder-7B-Instruct", "qwen2.5-coder:7b", "qwen2.5-coder"),
            source=_hf("Qwen/Qwen2.5-Coder-7B")),
    LlmArch("phi-3-mini-4k", "Phi-3-mini 4k", **_PHI3_MINI, max_ctx=4096,
            aliases=("microsoft/Phi-3-mini-4k-instruct", "phi3:mini", "phi3", "phi-3-mini"),
            source=_hf("microsoft/Phi-3-mini-4k-instruct")),
    LlmArch("phi-3-mini-128k", "Phi-3-mini 128k", **_PHI3_MINI, max_ctx=131072,
            aliases=("microsoft/Phi-3-mini-128k-instruct", "phi3:mini-128k"),
            source=_hf("microsoft/Phi-3-mini-128k-instruct")),
    # Gemma 2 9B: head_dim 256 (q_dim 4096 != hidden), 4 norms a block, GeGLU, tied 256k vocabulary.
    LlmArch("gemma-2-9b", "Gemma 2 9B", n_layers=42, hidden=3584, intermediate=14336, n_heads=16, n_kv_heads=8,
            head_dim=256, vocab=256000, max_ctx=8192, tied_embeddings=True, norms_per_layer=4, family="gemma2",
            aliases=("google/gemma-2-9b", "google/gemma-2-9b-it", "gemma2:9b", "gemma2"),
            source=_hf("google/gemma-2-9b")),
    LlmArch("starcoder", "StarCoder 15.5B", **_STARCODER,
            aliases=("bigcode/starcoder", "bigcode/starcoderbase", "starcoder-15b", "starcoder:15b"),
            source=_hf("bigcode/starcoder")),
    LlmArch("octocoder", "OctoCoder 15.5B", **_STARCODER,
            aliases=("bigcode/octocoder",), source=_hf("bigcode/octocoder")),
    LlmArch("llava-1.5-7b", "LLaVA-1.5 7B", **_LLAMA2_7B, vision=_CLIP_L_336, family="llava",
            aliases=("llava-hf/llava-1.5-7b-hf", "liuhaotian/llava-v1.5-7b", "llava:7b", "llava"),
            source=_hf("llava-hf/llava-1.5-7b-hf")),
    LlmArch("smollm2-135m", "SmolLM2 135M", n_layers=30, hidden=576, intermediate=1536, n_heads=9, n_kv_heads=3,
            head_dim=64, vocab=49152, max_ctx=8192, tied_embeddings=True,
            aliases=("HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2:135m"),
            source=_hf("HuggingFaceTB/SmolLM2-135M")),
    LlmArch("gemma-3-270m", "Gemma 3 270M", n_layers=18, hidden=640, intermediate=2048, n_heads=4, n_kv_heads=1,
            head_dim=256, vocab=262144, max_ctx=32768, tied_embeddings=True, norms_per_layer=4, qk_norm=True,
            family="gemma3_text", aliases=("google/gemma-3-270m", "google/gemma-3-270m-it", "gemma3:270m"),
            source=_hf("google/gemma-3-270m")),
)



def _tinylm(preset: str, n_layers: int, n_heads: int, hidden: int, ctx: int, source: str) -> LlmArch:
    """A preset of onecard.tinylm's GPT with its defaults (pos rope, bias False): pre-LayerNorm without biases, fused
    qkv, GELU MLP 4x wide, no position table, tied embeddings; vocabulary 65, character-level TinyShakespeare
    (nanoGPT data/shakespeare_char). A BPE vocabulary changes only the tied embedding."""
    return LlmArch(f"tinylm-{preset}", f"tinylm {preset}", n_layers=n_layers, hidden=hidden, intermediate=4 * hidden,
                   n_heads=n_heads, n_kv_heads=n_heads, head_dim=hidden // n_heads, vocab=65, max_ctx=ctx,
                   tied_embeddings=True, gated_mlp=False, norm="layer", norm_bias=False, fused_qkv=True,
                   family="tinylm", aliases=(f"tinylm:{preset}",),
                   source=f"onecard/tinylm/config.py preset {preset!r}; {source}")


# onecard.tinylm's from-scratch GPT (trained by `onecard tinylm train`; memory in onecard/fit/tinylm.py).
CATALOG += (
    _tinylm("tiny", 2, 2, 32, 32, "the CPU test size"),
    _tinylm("nanogpt-cpu", 4, 4, 128, 64, "nanoGPT README's CPU run of config/train_shakespeare_char.py"),
    _tinylm("baby", 6, 6, 384, 256, "nanoGPT config/train_shakespeare_char.py, its 10.65M 'baby GPT'"),
)

_SUFFIXES = ("-instruct", "-chat", "-hf", "-it", "-base")


def normalize(name: str) -> str:
    """A name as matched: lower case, org prefix and -instruct/-chat/-hf/-it/-base suffixes removed.

    >>> normalize("meta-llama/Meta-Llama-3.1-8B-Instruct")
    'llama-3.1-8b'
    """
    s = name.strip().lower().replace("_", "-").replace(" ", "-")
    s = s.rsplit("/", 1)[-1]
    s = re.sub(r"^meta-(?=llama)", "", s)
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            if s.endswith(suffix) and len(s) > len(suffix):
                s, changed = s[: -len(suffix)], True
    return s


def _index() -> dict[str, LlmArch]:
    index: dict[str, LlmArch] = {}
    for arch in CATALOG:
        for name in (arch.key, arch.name, *arch.aliases):
            index.setdefault(name.lower(), arch)
            index.setdefault(normalize(name), arch)
    return index


_INDEX = _index()


def find(name: str) -> LlmArch | None:
    """The catalog architecture for a name, hub id or Ollama tag (`llama3.1:8b`), or None."""
    return _INDEX.get(name.strip().lower()) or _INDEX.get(normalize(name))


def names() -> list[str]:
    """Every name `find` accepts, for suggestions."""
    return sorted(_INDEX)


def with_weights(arch: LlmArch, weights: WeightsFile) -> LlmArch:
    """The same architecture with the sizes read from its files."""
    return replace(arch, weights_file=weights)


def hf_config(arch: LlmArch) -> Any:
    """A transformers config with this architecture's dimensions (for `fit --trace`; needs transformers)."""
    from onecard.core.extras import require

    transformers = require("transformers", "fit")
    common = dict(vocab_size=arch.vocab, hidden_size=arch.hidden, intermediate_size=arch.intermediate,
                  num_hidden_layers=arch.n_layers, num_attention_heads=arch.n_heads,
                  num_key_value_heads=arch.n_kv_heads, max_position_embeddings=arch.max_ctx,
                  tie_word_embeddings=arch.tied_embeddings)
    if arch.family == "gpt_bigcode":
        return transformers.GPTBigCodeConfig(vocab_size=arch.vocab, n_positions=arch.learned_positions,
                                             n_embd=arch.hidden, n_layer=arch.n_layers, n_head=arch.n_heads,
                                             n_inner=arch.intermediate, multi_query=arch.n_kv_heads == 1)
    if arch.family == "falcon":
        return transformers.FalconConfig(vocab_size=arch.vocab, hidden_size=arch.hidden,
                                         num_hidden_layers=arch.n_layers, num_attention_heads=arch.n_heads,
                                         multi_query=True, parallel_attn=True, bias=False)
    model_type = {"llava": "llama", "mistral": "mistral", "qwen2": "qwen2", "phi3": "phi3",
                  "gemma2": "gemma2", "gemma3_text": "gemma3_text"}.get(arch.family, "llama")
    if model_type in ("llama", "mistral", "gemma2", "gemma3_text"):
        common["head_dim"] = arch.head_dim
    return transformers.AutoConfig.for_model(model_type, **common)

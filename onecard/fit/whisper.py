"""Whisper (openai-whisper, faster-whisper/CTranslate2, transformers): catalog facts and the memory estimator.

Transcription = one encoder pass per 30 s window (1500 frames), then beam search in the decoder. The decoder
keeps, per layer, self-attention keys/values for up to 448 text positions per hypothesis (batch x beam of them)
and cross-attention keys/values over the 1500 encoder frames. Who copies the cross-attention cache per beam is a
runtime detail that moves the peak by a GiB on large models, so it is modelled per runtime, with its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onecard.core.errors import ConfigError
from onecard.core.gpus import GpuSpec
from onecard.fit.estimate import GIB, Estimate
from onecard.fit.job import FitJob, release
from onecard.fit.overheads import CUDA_CONTEXT_GIB, lazy_note
from onecard.fit.readers import local_path

__all__ = ["WhisperArch", "find", "from_config", "estimate", "CATALOG"]

N_AUDIO_CTX = 1500  # encoder frames per 30 s window (paper, Sec. 2.2: 3000 mel frames, conv stride 2)
N_TEXT_CTX = 448  # decoder positions
# CTranslate2's cub caching allocator keeps up to 200 MB of freed blocks (src/cuda/allocator.cc, max_cached_bytes).
# Since CTranslate2 2.11 (PR #684) that allocator is used only with CT2_CUDA_ALLOCATOR=cub_caching or CUDA < 11.2; the
# default is cudaMallocAsync, whose pool holds freed memory until a synchronisation, by an amount not measured here.
# The 200 MB bound stands for both (the measured faster-whisper rows are 4-12% above the estimate, not below).
CT2_CACHE_BYTES = 200 * 2**20
# PyTorch allocator rounding, as a share of every tensor. Not overheads.ALLOC_SLACK (a share of the transient tensors):
# Whisper's transient tensors are small beside its weights and caches, and the cache growth that makes most of an
# inference's slack is counted on its own (`_infer`: the outgrown self-attention blocks). No measurement pins 0.03:
# benchmarks/fit_whisper_trace.py applies the caching allocator's segment rules to each model's fp16 weights and gets
# 1% (tiny) to 12% (small), 9.5% for large (an upper bound: it packs the 20 MiB segments in allocation order), while
# the measured large-v2 rows on PyTorch (faster-whisper README v1.1.0: openai-whisper, transformers) are within 2%.
ROUNDING_SLACK = 0.03
# Encoder working memory of one window beside its weights, in 1500 frames x d_model elements: 12.1-12.4 for tiny, small
# and large-v2 (benchmarks/fit_whisper_trace.py: transformers' WhisperEncoder, fp16, SDPA, traced on fake tensors).
ENCODER_WORKING_UNITS = 12
# openai-whisper's released checkpoints (the .pt files load_model downloads) hold fp16 tensors: large-v2.pt is 2.87 GB
# for 1.54B parameters (openai/whisper whisper/__init__.py _MODELS; the sizes are the files').
CHECKPOINT_BYTES_PER_PARAM = 2


@dataclass(frozen=True)
class WhisperArch:
    """Model dimensions (Radford et al. 2022, Table 1; HF config.json d_model/encoder_layers/...)."""

    key: str
    d: int  # d_model
    enc_layers: int
    dec_layers: int
    heads: int
    n_mels: int = 80
    vocab: int = 51865
    source: str = "Whisper paper arXiv:2212.04356 Table 1; openai/whisper-* config.json"
    ffn: int = 0  # feed-forward width; 0: 4 x d_model, as every released Whisper has

    @property
    def params(self) -> int:
        """Parameters as counted by transformers' WhisperForConditionalGeneration (output layer tied)."""
        d = self.d
        attn = 4 * d * d + 3 * d  # q, k (no bias), v, out
        f = self.ffn or 4 * d
        ffn = 2 * d * f + f + d  # fc1 d->f, fc2 f->d
        enc = self.enc_layers * (attn + ffn + 4 * d) + self.n_mels * d * 3 + d + 3 * d * d + d + N_AUDIO_CTX * d + 2 * d
        dec = self.dec_layers * (2 * attn + ffn + 6 * d) + self.vocab * d + N_TEXT_CTX * d + 2 * d
        return enc + dec


_BASE = {
    "tiny": (384, 4, 4, 6),
    "base": (512, 6, 6, 8),
    "small": (768, 12, 12, 12),
    "medium": (1024, 24, 24, 16),
    "large": (1280, 32, 32, 20),
}
CATALOG: dict[str, WhisperArch] = {}
for _name, (_d, _le, _ld, _h) in _BASE.items():
    if _name != "large":
        CATALOG[_name] = WhisperArch(_name, _d, _le, _ld, _h)
        CATALOG[f"{_name}.en"] = WhisperArch(f"{_name}.en", _d, _le, _ld, _h, vocab=51864)
for _v in ("large-v1", "large-v2"):
    CATALOG[_v] = WhisperArch(_v, 1280, 32, 32, 20)
CATALOG["large-v3"] = WhisperArch("large-v3", 1280, 32, 32, 20, n_mels=128, vocab=51866)
# large-v3-turbo: the large-v3 encoder with 4 decoder layers (openai/whisper-large-v3-turbo config.json)
CATALOG["large-v3-turbo"] = WhisperArch("large-v3-turbo", 1280, 32, 4, 20, n_mels=128, vocab=51866)
# Distil-Whisper (huggingface/distil-whisper README's table: 756M, 756M, 394M, 166M parameters): the teacher's encoder
# with 2 decoder layers (4 for distil-small.en); the counts below reproduce those figures.
_DISTIL = "Distil-Whisper (Gandhi et al. 2023, arXiv:2311.00430); distil-whisper/* config.json"
CATALOG["distil-large-v2"] = WhisperArch("distil-large-v2", 1280, 32, 2, 20, source=_DISTIL)
for _v in ("distil-large-v3", "distil-large-v3.5"):
    CATALOG[_v] = WhisperArch(_v, 1280, 32, 2, 20, n_mels=128, vocab=51866, source=_DISTIL)
CATALOG["distil-medium.en"] = WhisperArch("distil-medium.en", 1024, 24, 2, 16, vocab=51864, source=_DISTIL)
CATALOG["distil-small.en"] = WhisperArch("distil-small.en", 768, 12, 4, 12, vocab=51864, source=_DISTIL)
_ALIASES = {"large": "large-v3", "turbo": "large-v3-turbo", "large-v3-turbo": "large-v3-turbo"}


def find(name: str) -> WhisperArch | None:
    """The dimensions of a transformers Whisper on disk (a folder with config.json, or the config.json: its own
    figures win over its name, and a config that is not a Whisper's gives None, even in a folder named `tiny`); the
    catalog entry for `whisper-small`, `openai/whisper-large-v3`, `Systran/faster-whisper-medium.en`; a
    cached hub id whose config.json says model_type whisper; or None."""
    path = local_path(name)  # None: not a path here (relative, in the web app)
    try:
        local = path is not None and path.exists()
    except OSError:  # longer than a file name may be: not a path
        local = False
    if path is not None and local:
        config = path / "config.json" if path.is_dir() else path
        if config.name == "config.json" and config.is_file():  # its own config, whatever its name says
            return _read(config, path.name if path.is_dir() else path.parent.name)
    key = name.strip().lower().rsplit("/", 1)[-1]
    for prefix in ("faster-whisper-", "faster-", "whisper-"):  # Systran/faster-distil-whisper-large-v3 too
        key = key.removeprefix(prefix)
    key = key.replace("distil-whisper-", "distil-")
    key = _ALIASES.get(key, key)
    if key in CATALOG:
        return CATALOG[key]
    if name.count("/") == 1 and not name.startswith((".", "/", "~")):
        from onecard.core.sources import hub_snapshot

        snapshot = hub_snapshot(name)
        return _read(snapshot / "config.json", name) if snapshot is not None else None
    return None


def from_config(cfg: dict[str, Any], key: str, source: str) -> WhisperArch:
    """The dimensions of a transformers WhisperConfig (config.json); missing keys take WhisperConfig's defaults.

    Raises:
        ConfigError: a dimension is not a positive whole number; the message names the file and the key.
    """
    defaults = {"d_model": 384, "encoder_layers": 4, "decoder_layers": 4, "encoder_attention_heads": 6,
                "num_mel_bins": 80, "vocab_size": 51865, "encoder_ffn_dim": 1536}  # transformers WhisperConfig
    dims: dict[str, int] = {}
    for name, default in defaults.items():
        value = cfg.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{source}: {name} {value!r} is not a positive whole number",
                              "fix the value in the config.json, or pass the model's original config")
        dims[name] = value
    d = dims["d_model"]
    return WhisperArch(key, d, dims["encoder_layers"], dims["decoder_layers"], dims["encoder_attention_heads"],
                       n_mels=dims["num_mel_bins"], vocab=dims["vocab_size"], source=source,
                       ffn=0 if dims["encoder_ffn_dim"] == 4 * d else dims["encoder_ffn_dim"])


def _read(config: Path, key: str) -> WhisperArch | None:
    """The Whisper a config.json describes; None when it is not a config.json or not a Whisper's."""
    from onecard.fit.readers import read_json

    if config.name != "config.json" or not config.is_file():
        return None
    cfg = read_json(config)
    if not isinstance(cfg, dict) or cfg.get("model_type") != "whisper":
        return None
    return from_config(cfg, key, str(config))


def runtime_of(job: FitJob) -> str:
    """The runtime that holds the model: the job's openai-whisper, faster-whisper or transformers, else
    faster-whisper."""
    return job.runtime if job.runtime in ("openai-whisper", "faster-whisper", "transformers") else "faster-whisper"


def _weight_bytes(arch: WhisperArch, runtime: str, quant: str) -> tuple[float, str]:
    p = arch.params
    if quant in ("fp32", "float32"):
        return p * 4.0, "fp32"
    if runtime == "openai-whisper" and quant == "auto":
        # whisper.load_model builds Whisper(dims) in fp32 and moves it to the GPU as is; transcribe(fp16=True), the
        # default, casts the mel to fp16 and each Linear/Conv1d casts its weight to the input dtype per call
        # (openai/whisper whisper/model.py `self.weight.to(x.dtype)`): fp32 weights, fp16 activations.
        return p * 4.0, "fp32 (load_model), fp16 activations"
    if runtime == "faster-whisper" and quant.startswith("int8"):
        # CTranslate2 int8: linear and embedding weights int8 with one fp32 scale per output row; the conv frontend
        # stays in the model's fp16 (WhisperModel::is_quantizable excludes "conv"), as do biases and norms.
        conv = arch.n_mels * arch.d * 3 + 3 * arch.d * arch.d
        rows = arch.enc_layers * 11.5 * arch.d + arch.dec_layers * 16.5 * arch.d + arch.vocab
        return (p - conv) * 1.0 + conv * 2.0 + rows * 4.0, "int8 (CTranslate2, fp16 activations)"
    return p * 2.0, "fp16"


def _infer(arch: WhisperArch, job: FitJob, notes: list[str]) -> tuple[dict[str, float], float, float]:
    rt = runtime_of(job)
    weights, wname = _weight_bytes(arch, rt, job.quant)
    act_b = 4 if wname == "fp32" else 2
    # openai-whisper's load_model reads the released checkpoint (fp16 tensors) with torch.load(map_location=device):
    # it sits on the GPU while the fp32 model is moved there, and once freed its blocks stay in PyTorch's cache
    # (nothing calls empty_cache). openai/whisper whisper/__init__.py load_model, 7858aa9 (2023-01) to c0d2f62
    # (2025-06). A model cast with .half() before it reaches the GPU (quant fp16) does not go through this.
    checkpoint = CHECKPOINT_BYTES_PER_PARAM * arch.params if rt == "openai-whisper" and job.quant != "fp16" else 0.0
    n_seq = job.batch * job.beam
    # Sequential long-form transcription conditions each window on the previous text (openai-whisper and
    # faster-whisper default condition_on_previous_text=True): up to 223 prompt + 224 new tokens = 447 positions.
    # The batched pipelines and transformers (condition_on_prev_tokens=False) decode at most 224 new tokens.
    prompted = job.batch == 1 and rt != "transformers"
    t_max = N_TEXT_CTX if prompted else N_TEXT_CTX // 2 + 4
    per_pos = 2 * arch.dec_layers * arch.d * act_b  # K and V, all layers, one position of one hypothesis
    self_kv = per_pos * n_seq * t_max
    # transformers' generate expands encoder_outputs by num_beams before the decoder projects them, so the
    # cross-attention cache is per beam; CTranslate2 does not replicate "memory*" state (TransformerDecoder::
    # replicate_state) and openai-whisper's current DecodingTask repeats only the tokens, not the audio features.
    # CTranslate2 before 3.6.0 did (its CHANGELOG, 3.6.0, 2023-02-16: "Reduce the beam search memory usage by not
    # duplicating the decoder states that are the same in each beam (e.g. the projected memory keys and values)").
    old_ct2 = release(job.ctranslate2_version, (999, 0, 0)) < (3, 6, 0)
    per_beam = rt == "transformers" or (rt == "faster-whisper" and old_ct2)
    cross_copies = n_seq if per_beam else job.batch
    cross_kv = per_pos * N_AUDIO_CTX * cross_copies
    # openai-whisper returns fp32 logits for every prompt position on the first step (model.py: `.float()`).
    logits = n_seq * (t_max // 2 + 3) * arch.vocab * (act_b + 4) if rt == "openai-whisper" else n_seq * arch.vocab * 8
    # Encoder pass of `batch` windows: residual, LN, q/k/v and the 4d MLP hidden; CTranslate2 materialises the
    # (heads, 1500, 1500) scores and their softmax, the PyTorch runtimes use SDPA.
    scores = 2 * arch.heads * N_AUDIO_CTX**2 if rt == "faster-whisper" else 0
    encoder = job.batch * (N_AUDIO_CTX * arch.d * ENCODER_WORKING_UNITS + scores) * act_b
    decode_phase = self_kv + cross_kv + logits
    notes += [
        f"runtime {rt}, weights {wname}, batch {job.batch} window(s) x beam {job.beam} = {n_seq} hypotheses",
        f"self-attention KV for {t_max} positions per hypothesis"
        + (" (previous-text prompt + 224 new tokens)" if prompted else " (224 new tokens, no previous-text prompt)"),
        f"cross-attention KV over {N_AUDIO_CTX} frames x {cross_copies} "
        + ("(per beam)" if per_beam else "(shared by the beams)")
        + (f" (CTranslate2 {job.ctranslate2_version})" if rt == "faster-whisper" and job.ctranslate2_version else ""),
    ]
    if rt == "openai-whisper" and checkpoint:
        notes.append(
            f"openai-whisper load_model: fp32 weights, plus the fp16 checkpoint ({checkpoint / GIB:.2f} GiB) that "
            "torch.load put on the GPU, freed but still held by PyTorch's cache (quant fp16: a model cast with "
            ".half() before .cuda(), which skips both)"
        )
    elif rt == "openai-whisper":
        notes.append("openai-whisper model cast with .half() before it reached the GPU (quant fp16)")
    parts = {"weights": weights, "kv_cache": self_kv + cross_kv, "logits": logits, "activations": 0.0}
    if encoder > decode_phase:
        parts.update(kv_cache=0.0, logits=0.0, activations=encoder)
    if checkpoint:
        # The cached checkpoint blocks are shaped like the weights (3-13 MiB per matrix, the 133 MiB embedding);
        # the measured V100S rows (faster-whisper README @a98a2ee, @58f4447: 11.1 GiB) match the decode reusing
        # none of them, not the 9.1 GiB that full reuse would give.
        parts["runtime"] = checkpoint
    if rt == "faster-whisper":
        parts["runtime"] = float(CT2_CACHE_BYTES)
        notes.append(lazy_note("CTranslate2"))
        return parts, 0.0, CUDA_CONTEXT_GIB
    # PyTorch runtimes grow the self-attention cache with torch.cat each step: the outgrown blocks stay cached.
    slack = self_kv + ROUNDING_SLACK * sum(parts.values())
    return parts, slack, CUDA_CONTEXT_GIB


def _train(arch: WhisperArch, job: FitJob, notes: list[str]) -> tuple[dict[str, float], float]:
    p = arch.params
    lora = job.method in ("lora", "qlora")
    opt = "adamw" if job.optimizer == "auto" else job.optimizer
    opt_b = 2 if "8bit" in opt else (0 if opt == "sgd" else 8)
    # Activations per layer (Korthikanti et al. 2022, fp16, SDPA): 34*s*d bytes; the decoder adds cross-attention
    # (~10*s*d). Gradient checkpointing keeps only each layer's input (2*s*d) plus one layer being recomputed.
    # benchmarks/fit_whisper_trace.py traces transformers' full fine-tuning step 15-22% below this (dropout 0 keeps
    # no masks): the figure is kept as the upper one.
    dec_s = N_TEXT_CTX
    if job.grad_ckpt:
        acts = 2 * (N_AUDIO_CTX * arch.enc_layers + dec_s * arch.dec_layers) * arch.d + 44 * N_AUDIO_CTX * arch.d
    else:
        acts = (34 * N_AUDIO_CTX * arch.enc_layers + 44 * dec_s * arch.dec_layers) * arch.d
    logits = dec_s * arch.vocab * (2 + 4 + 4)  # fp16 logits, fp32 upcast for the loss, and its gradient
    if lora:
        r = job.lora_rank
        trainable = 2 * r * arch.d * 2 * (arch.enc_layers + 2 * arch.dec_layers)  # q and v of every attention
        parts = {
            "weights": p * 2.0,
            "adapters": trainable * 4.0,
            "gradients": trainable * 4.0,
            "optimizer": trainable * float(opt_b),
        }
        notes.append(f"LoRA r={r} on q,v: {trainable / 1e6:.2f}M trainable; frozen weights fp16")
    else:
        parts = {"weights": p * 6.0, "gradients": p * 4.0, "optimizer": p * float(opt_b)}
        notes.append("full fine-tune, fp16 mixed precision: fp32 master weights + fp16 copies, fp32 gradients")
    parts |= {"activations": acts * job.batch, "logits": logits * job.batch}
    notes.append(
        f"batch {job.batch} x 30 s windows, labels padded to {dec_s} tokens, optimizer {opt}, "
        f"gradient checkpointing {'on' if job.grad_ckpt else 'off'}"
    )
    return parts, ROUNDING_SLACK * sum(parts.values())


def estimate(arch: WhisperArch, job: FitJob, card: GpuSpec | None) -> Estimate:
    """Peak memory of transcription (`job.job == "infer"`) or fine-tuning with AdamW for `arch`."""
    notes = [
        f"whisper {arch.key}: {arch.params / 1e6:.0f}M params, d_model {arch.d}, "
        f"{arch.enc_layers}+{arch.dec_layers} layers"
    ]
    if job.job == "train":
        parts, slack = _train(arch, job, notes)
        context = CUDA_CONTEXT_GIB
    else:
        parts, slack, context = _infer(arch, job, notes)
    return Estimate(
        parts={k: v / GIB for k, v in parts.items() if v},
        slack_gib=slack / GIB,
        context_gib=context,
        assumptions=notes,
    )

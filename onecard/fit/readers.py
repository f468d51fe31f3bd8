"""Architectures from files: a config.json, a model folder (safetensors headers), a .gguf file, or the HF cache.

Nothing here loads weights. A safetensors file starts with an 8-byte little-endian header length and a JSON header
that names every tensor's dtype, shape and byte range; a GGUF file starts with its metadata and tensor table
(https://github.com/ggml-org/ggml/blob/master/docs/gguf.md). Both give the true bytes of each tensor.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import struct
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from onecard.core.errors import ConfigError, DataError, ModelNotFoundError
from onecard.core.sources import hub_cache_dir, hub_snapshot
from onecard.fit.catalog import LlmArch, VisionTower, WeightsFile

__all__ = ["read_path", "read_config", "read_json", "read_gguf", "read_safetensors_header", "hub_cache_dir",
           "find_in_hub_cache", "shard_files", "local_path", "absolute_paths_only", "GGML_TYPES", "GGUF_FILE_TYPES"]

# Whether a relative reference may name a file in the working directory: on the CLI (`onecard fit mymodel/`), not in
# the web app, whose paths arrive absolute and checked against its registered folders (`web.routes.fit.model_ref`), so
# that no answer tells a web user whether a file exists where the server runs.
_RELATIVE_PATHS: ContextVar[bool] = ContextVar("relative_paths", default=True)


@contextlib.contextmanager
def absolute_paths_only() -> Iterator[None]:
    """Within it, a model reference names a file only by an absolute path; a relative one is a name
    (`plan.resolve_arch`, `whisper.find`)."""
    token = _RELATIVE_PATHS.set(False)
    try:
        yield
    finally:
        _RELATIVE_PATHS.reset(token)


def local_path(ref: str) -> Path | None:
    """`ref` as a path on this machine, or None where it may not name one (relative, in the web app; ~user of no user
    here)."""
    try:
        path = Path(ref).expanduser()
    except RuntimeError:
        return None
    return path if path.is_absolute() or _RELATIVE_PATHS.get() else None


MAX_LAYERS = 4096  # repeated blocks; the deepest published LLMs have a few hundred (a sanity bound, not a limit)

# ggml type id -> (name, elements per block, bytes per block); gguf-py constants.GGML_QUANT_SIZES
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}
# general.file_type -> llama.cpp ftype name (llama.h enum llama_ftype)
GGUF_FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
                   11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M",
                   18: "Q6_K", 30: "IQ4_XS", 32: "BF16"}
_ST_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
             "F8_E4M3": 1, "F8_E5M2": 1}

_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|blk|block)\.(\d+)\.")
_EMBED = ("embed_tokens", "wte.", "word_embeddings", "tok_embeddings", "token_embd")
_OUTPUT = ("lm_head", "output.", "output_norm", "model.norm.", "ln_f.", "norm.weight")

# Defaults of the transformers config classes, for keys a config.json leaves out.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, max_position_embeddings=2048, tie_word_embeddings=False),
    "mistral": dict(tie_word_embeddings=False), "qwen2": dict(tie_word_embeddings=False),
    "phi3": dict(tie_word_embeddings=False), "gemma": dict(tie_word_embeddings=True),
    "gemma2": dict(tie_word_embeddings=True), "gemma3_text": dict(tie_word_embeddings=True),
}
_NOT_GATED = {"gpt_bigcode", "falcon", "gpt2", "gpt_neox", "starcoder2", "phi"}


def _first(cfg: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    return default


def _size(cfg: dict[str, Any], source: str, *keys: str, default: int | None = None, most: int = 2**31) -> int:
    """A dimension of the config: the first of `keys` that is set, as a positive integer up to `most`.

    Raises:
        ConfigError: it is missing (and has no default), not an integer, not positive, or larger than any model's.
    """
    value = _first(cfg, *keys, default=default)
    if value is None:
        raise ConfigError(f"{source}: not a decoder-only LLM config (no {' / '.join(keys)})",
                          "pass the config.json of a causal language model")
    fix = ("the file's metadata is damaged: download or convert the GGUF again" if source.endswith(" metadata") else
           "fix the value in the config.json, or pass the model's original config")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or \
            value != int(value) or value <= 0:
        raise ConfigError(f"{source}: {keys[0]} must be a positive integer, got {value!r}", fix)
    if value > most:
        raise ConfigError(f"{source}: {keys[0]} {value:,} is larger than any model's (at most {most:,} here)", fix)
    return int(value)


def read_json(path: Path) -> Any:
    """A JSON file's content.

    Raises:
        ConfigError: it is not UTF-8 or not JSON; the message names the file and the line.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})", "pass a JSON file saved as UTF-8") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})",
                          "fix the file, or download it again") from None


def _vision(cfg: dict[str, Any], text_hidden: int, source: str) -> VisionTower:
    """A CLIP-style ViT tower + LLaVA mlp2x_gelu projector, counted from the vision_config dimensions."""
    v = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "image_size": 336,
         "patch_size": 14, **cfg.get("vision_config", {})}
    h, f, p, layers, size = (_size(v, f"{source} vision_config", k) for k in (
        "hidden_size", "intermediate_size", "patch_size", "num_hidden_layers", "image_size"))
    patches = (size // p) ** 2
    block = 4 * (h * h + h) + 2 * h * f + f + h + 4 * h
    params = 3 * p * p * h + h + (patches + 1) * h + 4 * h + layers * block
    projector = h * text_hidden + text_hidden + text_hidden * text_hidden + text_hidden
    return VisionTower(f"ViT {h}x{layers} @ {size}px", params, projector, h, patches)


def read_config(cfg: dict[str, Any], key: str, source: str) -> LlmArch:
    """An architecture from a transformers config.json dict.

    Raises:
        ConfigError: the config does not describe a decoder-only text model this planner counts.
    """
    if not isinstance(cfg, dict):
        raise ConfigError(f"{source}: expected a JSON object of config keys, got {type(cfg).__name__}",
                          "pass the config.json of a causal language model")
    if not isinstance(cfg.get("model_type"), str):
        what = f" (a diffusers {cfg['_class_name']} config)" if isinstance(cfg.get("_class_name"), str) else ""
        raise ConfigError(f"{source}: no model_type, so not a transformers model config{what}",
                          "pass the config.json of a causal language model, which names its model_type; for a "
                          "Stable Diffusion, YOLO or Whisper model, its catalog name (sd15, yolov8s, whisper-small)")
    model_type = cfg["model_type"]
    vision = None
    if "text_config" in cfg:  # LLaVA-style: the LLM lives in text_config
        if not isinstance(cfg["text_config"], dict) or not isinstance(cfg.get("vision_config", {}), dict):
            raise ConfigError(f"{source}: text_config and vision_config must be JSON objects",
                              "pass the config.json of a LLaVA-style model as its authors wrote it")
        text = {"model_type": "llama", **cfg["text_config"]}
        arch = read_config(text, key, source)
        vision = _vision(cfg, arch.hidden, source)
        return replace(arch, vision=vision, family=model_type)
    c = {**_DEFAULTS.get(model_type, {}), **cfg}
    hidden = _size(c, source, "hidden_size", "n_embd", "d_model")
    layers = _size(c, source, "num_hidden_layers", "n_layer", "num_layers", most=MAX_LAYERS)
    heads = _size(c, source, "num_attention_heads", "n_head")
    kv = _size(c, source, "num_key_value_heads", "num_kv_heads", default=heads)
    if c.get("multi_query") and not c.get("new_decoder_architecture"):
        kv = 1
    parallel = model_type == "falcon" and c.get("parallel_attn", True) and not c.get("new_decoder_architecture")
    norms = 4 if model_type in ("gemma2", "gemma3", "gemma3_text") else 1 if parallel else 2
    if heads > hidden or kv > heads:
        raise ConfigError(f"{source}: {heads} attention heads ({kv} KV heads) for hidden size {hidden} do not make a "
                          "transformer", "fix the config.json, or pass the model's original config")
    return LlmArch(
        key=key, name=key, n_layers=layers, hidden=hidden,
        intermediate=_size(c, source, "intermediate_size", "n_inner", "ffn_hidden_size", default=4 * hidden),
        n_heads=heads, n_kv_heads=kv, head_dim=_size(c, source, "head_dim", default=hidden // heads),
        vocab=_size(c, source, "vocab_size", "padded_vocab_size", default=32000),
        max_ctx=_size(c, source, "max_position_embeddings", "n_positions", "seq_length", "max_seq_len", default=2048),
        tied_embeddings=bool(c.get("tie_word_embeddings", True)),
        gated_mlp=model_type not in _NOT_GATED,
        norm="layer" if model_type in _NOT_GATED else "rms",
        norms_per_layer=norms,
        qkv_bias=model_type == "qwen2" or bool(c.get("attention_bias")),
        linear_bias=model_type == "gpt_bigcode" or bool(c.get("bias", False)) and model_type == "falcon",
        fused_qkv=model_type in ("phi3", "falcon", "gpt_bigcode"),
        fused_gate_up=model_type == "phi3",
        qk_norm=model_type in ("gemma3", "gemma3_text", "qwen3"),
        learned_positions=_size(c, source, "n_positions") if model_type == "gpt_bigcode" and c.get("n_positions")
        is not None else 0,
        family=model_type, vision=vision, source=source,
    )


def read_safetensors_header(path: str | Path) -> dict[str, dict[str, Any]]:
    """The tensor table of a .safetensors file: name -> {dtype, shape, data_offsets}, without reading weights.

    Raises:
        ConfigError: the file is not a whole safetensors file (bad header, or shorter than its tensor table says).
    """
    bad = ConfigError(f"{path}: not a readable .safetensors file (damaged or cut off)", "download the file again")
    file_size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise bad
        (size,) = struct.unpack("<Q", head)
        if size > file_size - 8:
            raise bad
        try:
            header = json.loads(fh.read(size))
        except ValueError:
            raise bad from None
    if not isinstance(header, dict):
        raise bad
    header.pop("__metadata__", None)
    for name, t in header.items():
        offsets = t.get("data_offsets") if isinstance(t, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] and isinstance(t.get("dtype"), str)):
            raise ConfigError(f"{path}: tensor {name!r} has no valid dtype and data_offsets", "download the file again")
        if 8 + size + offsets[1] > file_size:
            raise ConfigError(f"{path}: truncated: tensor {name!r} ends at byte {8 + size + offsets[1]:,} but the file "
                              f"has {file_size:,} bytes", "the download was cut off: download the file again")
    return header


def _group(sizes: dict[str, int]) -> tuple[tuple[int, ...], int, int, int]:
    """Split per-tensor bytes into (per-block bytes, embedding, output head + norm, other)."""
    layers: dict[int, int] = {}
    embed = output = other = 0
    for name, nbytes in sizes.items():
        m = _LAYER.search(name)
        if m and "vision" not in name:
            layers[int(m.group(1))] = layers.get(int(m.group(1)), 0) + nbytes
        elif any(t in name for t in _EMBED):
            embed += nbytes
        elif any(name.startswith(t) or f".{t}" in name for t in _OUTPUT):
            output += nbytes
        else:
            other += nbytes
    return tuple(layers[i] for i in sorted(layers)), embed, output, other


def _read_folder(folder: Path, key: str) -> LlmArch:
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ConfigError(f"{folder}: no config.json next to the weights",
                          "pass a model folder that holds config.json, or the config.json itself")
    cfg = read_json(cfg_path)
    arch = read_config(cfg, key, str(cfg_path))
    shards = shard_files(folder)
    if not shards:
        return arch
    sizes: dict[str, int] = {}
    dtypes: dict[str, int] = {}
    for shard in shards:
        tensors = read_safetensors_header(shard)
        if not tensors:
            raise DataError(f"{shard}: holds no tensors (its header lists none)",
                            "the file is empty or was written without weights: download or save the model again")
        for name, t in tensors.items():
            start, end = t["data_offsets"]
            sizes[name] = end - start
            dtypes[t["dtype"]] = dtypes.get(t["dtype"], 0) + end - start
    qconfig = cfg.get("quantization_config")
    quant = (qconfig.get("quant_method") if isinstance(qconfig, dict) else None) or \
        max(dtypes, key=dtypes.__getitem__).lower()
    layer_bytes, embed, output, other = _group(sizes)

    return replace(arch, weights_file=WeightsFile(str(folder), "safetensors", str(quant), layer_bytes, embed, output,
                                                  other))


def shard_files(folder: Path) -> list[Path]:
    """The safetensors files a model folder's weights are in: those its model.safetensors.index.json names (each
    checked to exist, inside the folder), else every *.safetensors in it."""
    index = folder / "model.safetensors.index.json"
    return _shards(index) if index.is_file() else sorted(folder.glob("*.safetensors"))


def _shards(index: Path) -> list[Path]:
    """The shard files a model.safetensors.index.json names, each checked to exist."""
    data = read_json(index)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
        raise ConfigError(f"{index}: no weight_map of tensor names to shard files", "download the file again")
    outside = [f for f in weight_map.values() if Path(f).is_absolute() or ".." in Path(f).parts or "\\" in f]
    if outside:  # an index names files of its own folder; anything else is damage, or a file planted to probe others
        raise ConfigError(f"{index}: names shard {outside[0]!r} outside its own folder",
                          "download the model again: an index lists shard files by their names in its folder")
    shards = sorted({index.parent / f for f in weight_map.values()})
    missing = [s.name for s in shards if not s.is_file()]
    if missing:
        raise ConfigError(f"{index.parent}: shard(s) {', '.join(missing[:3])} named in {index.name} are missing",
                          "download the missing shards, or pass the config.json alone")
    return shards


class _GgufParser:
    """Just enough of the GGUF v2/v3 format to read metadata and the tensor table, checked against the file's size."""

    _SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def __init__(self, fh: BinaryIO, path: str | Path) -> None:
        self.fh, self.path = fh, path
        self.size = os.fstat(fh.fileno()).st_size

    def _error(self, what: str) -> ConfigError:
        return ConfigError(f"{self.path}: {what}", "the file is damaged or its download was cut off: download it again")

    def _read(self, n: int) -> bytes:
        if n > self.size - self.fh.tell():
            raise self._error(f"truncated header (needs {n:,} more bytes at byte {self.fh.tell():,})")
        return self.fh.read(n)

    def _unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]

    def _string(self) -> str:
        return self._read(self._unpack("<Q")).decode("utf-8", errors="replace")

    def _value(self, vtype: int) -> Any:
        if vtype == 8:
            return self._string()
        if vtype == 9:  # array: item type, count, items; long arrays (token lists) are skipped, their length kept
            itype, count = self._unpack("<I"), self._unpack("<Q")
            if itype in self._SCALARS:
                size = struct.calcsize(self._SCALARS[itype])
                if count > 64:
                    if size * count > self.size - self.fh.tell():
                        raise self._error(f"truncated header (an array of {count:,} items runs past the end)")
                    self.fh.seek(size * count, os.SEEK_CUR)
                    return count
                return [self._unpack(self._SCALARS[itype]) for _ in range(count)]
            if itype not in (8, 9):
                raise self._error(f"unknown metadata array item type {itype}")
            if count > self.size - self.fh.tell():  # each item takes at least a byte
                raise self._error(f"truncated header (an array of {count:,} items runs past the end)")
            items = [self._value(itype) for _ in range(count)]
            return count if count > 64 else items
        if vtype not in self._SCALARS:
            raise self._error(f"unknown metadata value type {vtype}")
        return self._unpack(self._SCALARS[vtype])

    def read(self) -> tuple[dict[str, Any], dict[str, tuple[int, int]]]:
        if self.fh.read(4) != b"GGUF":
            raise ConfigError(f"{self.path}: not a GGUF file (bad magic)",
                              "pass a .gguf model file written by llama.cpp")
        version = self._unpack("<I")
        if version < 2:
            raise ConfigError(f"GGUF version {version} is too old to read",
                              "convert the model with a current llama.cpp")
        n_tensors, n_kv = self._unpack("<Q"), self._unpack("<Q")
        meta = {}
        for _ in range(n_kv):
            key = self._string()
            meta[key] = self._value(self._unpack("<I"))
        tensors, end = {}, 0
        for _ in range(n_tensors):
            name = self._string()
            n_dims = self._unpack("<I")
            if n_dims > 8:  # ggml tensors have at most 4 dimensions (GGML_MAX_DIMS)
                raise self._error(f"tensor {name!r} has {n_dims} dimensions")
            dims = [self._unpack("<Q") for _ in range(n_dims)]
            ttype = self._unpack("<I")
            offset = self._unpack("<Q")
            if ttype not in GGML_TYPES:
                raise self._error(f"tensor {name!r} has an unknown ggml type {ttype}")
            n = 1
            for d in dims:
                n *= d
            _, block, nbytes = GGML_TYPES[ttype]
            tensors[name] = (n, n // block * nbytes)
            end = max(end, offset + n // block * nbytes)
        # tensor data starts at the next multiple of general.alignment (32 by default) after the header (gguf.md)
        align = meta.get("general.alignment", 32)
        align = align if isinstance(align, int) and align > 0 else 32
        data_start = -(-self.fh.tell() // align) * align
        if data_start + end > self.size:
            raise ConfigError(
                f"{self.path}: truncated: its tensor table needs {data_start + end:,} bytes, the file has "
                f"{self.size:,}",
                "the download was cut off: download the file again (the planner would size a model that cannot load)")
        return meta, tensors


def read_gguf(path: str | Path) -> LlmArch:
    """An architecture and its real per-tensor sizes from a GGUF file's header."""
    with open(path, "rb") as fh:
        meta, tensors = _GgufParser(fh, path).read()
    a = str(meta.get("general.architecture", "llama"))

    def kv(name: str, default: Any = None) -> Any:
        return meta.get(f"{a}.{name}", default)

    def size(name: str, default: int | None = None) -> int:
        return _size(meta, f"{path} metadata", f"{a}.{name}", default=default)

    hidden, heads = size("embedding_length"), size("attention.head_count")
    layers = _size(meta, f"{path} metadata", f"{a}.block_count", most=MAX_LAYERS)
    kv_heads = size("attention.head_count_kv", heads)
    if heads > hidden or kv_heads > heads:
        raise ConfigError(f"{path}: {heads} attention heads ({kv_heads} KV heads) for embedding length {hidden} do "
                          "not make a transformer", "the file is damaged: download it again")
    embd = tensors.get("token_embd.weight", (0, 0))[0] // hidden
    vocab = kv("vocab_size") or meta.get("tokenizer.ggml.tokens") or embd
    if not isinstance(vocab, int) or vocab <= 0:
        raise ConfigError(f"{path}: no vocabulary size (no vocab_size, token list or token_embd.weight)",
                          "the file is damaged: download it again")
    layer_bytes, embed, output, other = _group({name: nbytes for name, (_, nbytes) in tensors.items()})
    file_type = meta.get("general.file_type", -1)
    ftype = GGUF_FILE_TYPES.get(file_type if isinstance(file_type, int) else -1, "unknown")
    name = Path(path).name
    family = {"starcoder": "gpt_bigcode", "gemma3": "gemma3_text"}.get(a, a)
    return LlmArch(
        key=name, name=str(meta.get("general.name", name)), n_layers=layers, hidden=hidden,
        intermediate=size("feed_forward_length", 4 * hidden), n_heads=heads, n_kv_heads=kv_heads,
        head_dim=size("attention.key_length", hidden // heads), vocab=vocab,
        max_ctx=size("context_length", 2048), tied_embeddings="output.weight" not in tensors,
        gated_mlp="blk.0.ffn_gate.weight" in tensors or "blk.0.ffn_gate_up.weight" in tensors,
        norm="layer" if "blk.0.attn_norm.bias" in tensors else "rms",
        norms_per_layer=4 if "blk.0.post_attention_norm.weight" in tensors else
        2 if "blk.0.ffn_norm.weight" in tensors else 1,
        fused_qkv="blk.0.attn_qkv.weight" in tensors, family=family, source=str(path),
        weights_file=WeightsFile(str(path), "gguf", ftype, layer_bytes, embed, output, other),
    )


def read_path(path: str | Path) -> LlmArch:
    """An architecture from a local config.json, model folder, .safetensors (with config.json beside it) or .gguf.

    Raises:
        ModelNotFoundError: nothing at that path.
        ConfigError: the file is not one of those kinds.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelNotFoundError(f"no file or folder at {p}", "check the path")
    if p.is_dir():
        return _read_folder(p, p.name)
    if p.suffix == ".gguf":
        return read_gguf(p)
    if p.suffix == ".safetensors":
        return _read_folder(p.parent, p.parent.name)
    if p.suffix == ".json":
        if (p.parent / "model.safetensors").is_file() or (p.parent / "model.safetensors.index.json").is_file():
            return _read_folder(p.parent, p.parent.name)
        return read_config(read_json(p), p.parent.name or p.stem, str(p))
    raise ConfigError(f"{p}: not a config.json, model folder, .safetensors or .gguf",
                      "pass one of those, or a catalog name")


def find_in_hub_cache(repo_id: str) -> LlmArch | None:
    """The architecture of a hub id from the local cache, offline; None when it is not cached with a config.json."""
    snapshot = hub_snapshot(repo_id)
    if snapshot is None or not (snapshot / "config.json").is_file():
        return None
    return replace(_read_folder(snapshot, repo_id), key=repo_id, name=repo_id)

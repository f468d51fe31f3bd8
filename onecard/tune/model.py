"""Models for tuning: resolve a reference to a local model folder, load it (16-bit or 4-bit), and its LoRA config.

Every reference ends as a Hugging Face model folder (config.json, safetensors, tokenizer):
- "tiny": a random 2-layer Llama-style model and a byte-level tokenizer, built here from a config (no download);
- a .gguf file, or a packaged model that ships one (smollm2-135m-instruct): converted once through transformers'
  GGUF loader (dequantized) into a safetensors folder under the data directory, and reused;
- a model folder, or a hub id in the local cache: used as is.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from onecard.core.paths import data_dir
from onecard.core.sources import resolve_model
from onecard.tune.config import TINY

__all__ = ["model_dir", "build_random_llama", "byte_tokenizer", "convert_gguf", "load_tokenizer", "load_model",
           "lora_config", "TINY_CONFIG", "SOURCE_FILE"]

# 2 layers of width 64 with grouped-query attention: about 0.1 M parameters, a training step in milliseconds.
TINY_CONFIG = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=True)
SOURCE_FILE = "onecard_source.json"  # in a model folder converted from a GGUF: {"gguf": path}
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def models_dir() -> Path:
    """Where converted and built models are kept, once."""
    return data_dir() / "models"


def model_dir(ref: str) -> Path:
    """The local Hugging Face folder of a model reference, building or converting it the first time."""
    if ref == TINY:
        out = models_dir() / "tiny-llama"
        if not (out / "config.json").is_file():
            _atomic_dir(out, build_random_llama)
        return out
    path = resolve_model(ref).path
    if path.is_file() and path.suffix == ".gguf":
        key = hashlib.sha256(f"{path}:{path.stat().st_size}".encode()).hexdigest()[:12]
        out = models_dir() / f"{path.stem}-{key}"
        if not (out / "config.json").is_file():
            _atomic_dir(out, lambda tmp: convert_gguf(path, tmp))
        return out
    return path


def _atomic_dir(out: Path, build: Any) -> None:
    """Build into a temporary folder and rename it, so a half-built folder is never reused."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        build(tmp)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def byte_tokenizer() -> Any:
    """A byte-level BPE tokenizer (256 bytes, 8 merges, ChatML specials and chat template); needs no download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    # A few English merges on top of the bytes: llama.cpp refuses a BPE vocabulary without any.
    merges = [("Ġ", "t"), ("Ġ", "a"), ("t", "h"), ("h", "e"), ("i", "n"), ("e", "r"), ("a", "n"), ("o", "n")]
    vocab = {c: i for i, c in enumerate(alphabet + [a + b for a, b in merges])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
    tokenizer.chat_template = CHATML
    return tokenizer


def build_random_llama(out: Path, shape: dict[str, Any] = TINY_CONFIG, seed: int = 0, dtype: Any = None) -> None:
    """Write a Llama of `shape` (the tiny test model by default) with random weights in `dtype` (default fp32) and
    the byte-level tokenizer to `out`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = byte_tokenizer()
    config = LlamaConfig(**{"vocab_size": len(tokenizer), **shape}, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype or torch.float32)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF file through transformers' GGUF loader and save it as a safetensors folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The loaded model keeps the GGUF quantizer, which refuses to save: the weights are plain tensors by now.
    model.hf_quantizer = None
    del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / SOURCE_FILE).write_text(json.dumps({"gguf": str(gguf)}))


def load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    from onecard.tune.formatting import ensure_template

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    ensure_template(tokenizer)
    return tokenizer


def load_model(path: str | Path, dtype: Any, device: str, four_bit: bool = False) -> Any:
    """The base model in `dtype` on `device`; with `four_bit`, QLoRA's NF4 weights with double quantization.

    QLoRA (Dettmers et al. 2023): 4-bit NormalFloat weights, their quantization constants quantized again, and
    bf16 compute; it needs CUDA and bitsandbytes (`onecard.core.device.supports_4bit`).
    """
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype}
    if four_bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
    if device.startswith("cuda"):
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    return model if device.startswith("cuda") else model.to(device)


def lora_config(rank: int, alpha: int, dropout: float, targets: str) -> Any:
    from peft import LoraConfig

    from onecard.core.peft_run import lora_modules

    names = lora_modules(targets)
    modules: str | list[str] = "all-linear" if names is None else list(names)
    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=modules, task_type="CAUSAL_LM")

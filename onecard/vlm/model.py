"""Vision-language models: resolve a reference to a model folder, load it (16-bit or NF4) with its processor, write
the chat prompt, and answer a question about images.

A reference is "tiny" (a random LLaVA built once under the data directory, `onecard.vlm.tiny`), a model folder, or a
hub id in the local Hugging Face cache (llava-hf/llava-1.5-7b-hf); nothing downloads. Any model transformers loads
with `AutoModelForImageTextToText` and `AutoProcessor` works; the defaults are LLaVA-1.5's.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onecard.core.errors import ModelNotFoundError
from onecard.core.paths import data_dir
from onecard.core.sources import resolve_model
from onecard.vlm.config import TINY
from onecard.vlm.tiny import LLAVA_CHAT_TEMPLATE, make_tiny_llava

__all__ = ["model_dir", "load_processor", "load_model", "load_images", "chat_messages", "prompt_text", "answer",
           "lora_config", "FROZEN_MODULES", "PROJECTOR", "DEFAULT_MODEL"]

DEFAULT_MODEL = "llava-hf/llava-1.5-7b-hf"
# kept in 16-bit under NF4 (fit counts them so): the ViT is small and frozen, the projector may train, and
# bitsandbytes leaves the output head alone anyway
FROZEN_MODULES = ("vision_tower", "multi_modal_projector", "lm_head")
PROJECTOR = "multi_modal_projector"  # transformers' name for LLaVA's projector (also LLaVA-NeXT, Mistral3...)
# the linear layers of a Llama/Mistral/Qwen2 decoder; "all-linear" means these, in the language model only
LM_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def model_dir(ref: str) -> Path:
    """The local folder of a model reference, building the tiny one the first time."""
    if ref == TINY:
        out = data_dir() / "models" / "tiny-llava"
        if not (out / "config.json").is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".tiny-llava."))
            try:  # built aside and renamed: a half-built folder is never reused
                make_tiny_llava(tmp, learnable=True)
                shutil.rmtree(out, ignore_errors=True)
                tmp.rename(out)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return out
    try:
        path = resolve_model(ref).path
    except ModelNotFoundError as e:
        if "/" in ref and not Path(ref).expanduser().is_absolute():
            raise  # a hub id: the error already says how to download it
        raise ModelNotFoundError(e.what, f"pass a model folder, 'tiny', or a cached hub id; get LLaVA-1.5 7B once "
                                         f"with `huggingface-cli download {DEFAULT_MODEL}` (online)") from e
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"{path} is not a model folder (no config.json)",
                                 f"pass a transformers model folder, e.g. the one `huggingface-cli download "
                                 f"{DEFAULT_MODEL}` fetches")
    return path


def load_processor(path: str | Path) -> Any:
    """The model's processor (image processor + tokenizer), with a pad token and a chat template (LLaVA-1.5's when
    the folder has none)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(path)
    tokenizer = processor.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if getattr(processor, "chat_template", None) is None:
        processor.chat_template = LLAVA_CHAT_TEMPLATE
    return processor


def load_model(path: str | Path, dtype: Any, device: str, four_bit: bool = False) -> Any:
    """The model in `dtype` on `device`; with `four_bit`, the language model in QLoRA's NF4 (double quantization,
    `dtype` compute), the vision tower and projector in `dtype` (`FROZEN_MODULES`). 4-bit needs CUDA and
    bitsandbytes (`onecard.core.device.supports_4bit`)."""
    from transformers import AutoModelForImageTextToText

    kwargs: dict[str, Any] = {"dtype": dtype}
    if four_bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype, llm_int8_skip_modules=list(FROZEN_MODULES))
    if device.startswith("cuda"):
        kwargs["device_map"] = {"": device}
    model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
    return model if device.startswith("cuda") else model.to(device)


def load_images(paths: Sequence[str | Path]) -> list[Any]:
    """The images at `paths` as RGB PIL images."""
    from PIL import Image

    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return images


def chat_messages(turns: Sequence[dict[str, str]], n_images: int) -> list[dict[str, Any]]:
    """Plain {"role", "content": text} turns as a processor's chat messages: the images open the first user turn."""
    messages: list[dict[str, Any]] = []
    for turn in turns:
        content: list[dict[str, Any]] = []
        if turn["role"] == "user" and not any(m["role"] == "user" for m in messages):
            content += [{"type": "image"}] * n_images
        content.append({"type": "text", "text": turn["content"]})
        messages.append({"role": turn["role"], "content": content})
    return messages


def prompt_text(processor: Any, turns: Sequence[dict[str, str]], n_images: int,
                add_generation_prompt: bool = False) -> str:
    """The model's chat template applied to `turns`, with one image placeholder per image."""
    text: str = processor.apply_chat_template(chat_messages(turns, n_images), tokenize=False,
                                              add_generation_prompt=add_generation_prompt)
    return text


def answer(model: Any, processor: Any, images: Sequence[Any], question: str, max_new_tokens: int = 32) -> str:
    """The model's greedy answer to `question` about `images` (PIL images or paths)."""
    import torch

    pictures = [im if hasattr(im, "convert") else load_images([im])[0] for im in images]
    text = prompt_text(processor, [{"role": "user", "content": question}], len(pictures), add_generation_prompt=True)
    inputs = processor(text=text, images=pictures or None, return_tensors="pt").to(model.device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    tokenizer = processor.tokenizer
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return str(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)).strip()


def lora_config(rank: int, alpha: int, dropout: float, targets: str, train_projector: bool = False) -> Any:
    """PEFT's LoraConfig for the language model's linear layers (never the vision tower's); with `train_projector`,
    the projector trains in full and is saved with the adapter."""
    from peft import LoraConfig

    from onecard.core.peft_run import lora_modules

    names = lora_modules(targets) or LM_LINEARS
    # a regex over module paths: "...language_model.layers.3.self_attn.q_proj", not "...vision_tower...q_proj"
    pattern = rf".*language_model.*\.({'|'.join(names)})"
    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=pattern, task_type="CAUSAL_LM",
                      modules_to_save=[PROJECTOR] if train_projector else None)

"""A tiny Stable Diffusion pipeline with random weights, saved as a diffusers folder: what the tests and the CPU
benchmark train on (no diffusion weights are on PyPI, and nothing downloads in tests).

The shapes are SD 1.5's layout scaled down (UNet2DConditionModel with block_out_channels (32, 64) and
cross_attention_dim 32, a two-level AutoencoderKL, a one-layer CLIPTextModel), or SDXL's with `sdxl=True`; the
CLIP tokenizer is built from a byte-level vocabulary written here (the 256 byte symbols, each also as a word end, and
a few merges), so its ids are real BPE ids with CLIP's special tokens and 77-token context.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["make_tiny_pipeline", "make_tiny_clip", "make_clip_tokenizer"]

_MERGES = ["s k", "sk s</w>", "r e", "re d</w>"]  # "sks" becomes one token, as a trigger word would


def make_tiny_pipeline(folder: str | Path, seed: int = 0, sdxl: bool = False) -> Path:
    """Write a random-weight SD-1.5-shaped pipeline into `folder` (with `sdxl`, SDXL-shaped: two text encoders, the
    second with a projection, and a UNet conditioned on their pooled output and the size ids); returns it."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from onecard.core.extras import require

    diffusers = require("diffusers", "diffuse")

    folder = Path(folder)
    tokenizer = make_clip_tokenizer()

    torch.manual_seed(seed)
    if sdxl:  # diffusers' own SDXL pipeline tests' tiny shapes, one block smaller; SDXL conditions on the
        # penultimate hidden states of both encoders (64 channels side by side) and the second's projection (32)
        # beside six size ids embedded in 8 channels each: 32 + 6 * 8 = 80
        unet = diffusers.UNet2DConditionModel(
            sample_size=8, block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=64,
            attention_head_dim=(2, 4), norm_num_groups=8, use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=80,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    else:
        unet = diffusers.UNet2DConditionModel(
            sample_size=8, block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32,
            attention_head_dim=4, norm_num_groups=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = diffusers.AutoencoderKL(
        block_out_channels=[8, 16], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
        layers_per_block=1, sample_size=32, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_attention_heads=2,
                max_position_embeddings=77, projection_dim=32, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    scheduler = diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                        num_train_timesteps=1000, clip_sample=False, steps_offset=1)
    if sdxl:
        pipe = diffusers.StableDiffusionXLPipeline(
            vae=vae, text_encoder=CLIPTextModel(CLIPTextConfig(num_hidden_layers=2, **text)), tokenizer=tokenizer,
            text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(num_hidden_layers=2, **text)),
            tokenizer_2=tokenizer, unet=unet, scheduler=scheduler)
    else:
        pipe = diffusers.StableDiffusionPipeline(
            vae=vae, text_encoder=CLIPTextModel(CLIPTextConfig(num_hidden_layers=1, **text)), tokenizer=tokenizer,
            unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def make_tiny_clip(folder: str | Path, seed: int = 0) -> Path:
    """Write a random-weight CLIP model (ViT on 32 px images, a one-layer text tower) with its processor into
    `folder`, as `onecard diffuse eval --clip` loads one; returns it."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    folder = Path(folder)
    tokenizer = make_clip_tokenizer()
    torch.manual_seed(seed)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def make_clip_tokenizer() -> Any:
    """A CLIP BPE tokenizer over the byte symbols and `_MERGES` (77-token context, CLIP's special tokens)."""
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    words = symbols + [s + "</w>" for s in symbols]
    words += ["".join(m.split()) for m in _MERGES] + ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        vocab, merges = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vocab.write_text(json.dumps({w: i for i, w in enumerate(dict.fromkeys(words))}))
        merges.write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n")
        return CLIPTokenizer(str(vocab), str(merges), model_max_length=77)


def _byte_symbols() -> list[str]:
    """GPT-2's byte-to-unicode table (which CLIP's BPE uses): printable bytes stand for themselves, the others are
    shifted past 255 so that no symbol is whitespace or a control character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(shifted)) for b in range(256)]

"""The pieces of LoRA training on a Stable Diffusion pipeline, each usable alone (no run config in here).

The recipe is diffusers' `train_text_to_image_lora.py` / `train_dreambooth_lora.py`: a peft LoRA on the UNet's
attention projections (to_q, to_k, to_v, to_out.0), the frozen VAE and text encoder run once to cache the latents and
the caption embeddings, and the loss is the MSE between the UNet's prediction and the DDPM target (the noise, or the
velocity for a v-prediction model) at a random timestep. The LoRA is saved in the diffusers/peft layout
(`pytorch_lora_weights.safetensors`, keys `unet.…to_q.lora.down.weight`) that `pipe.load_lora_weights` reads.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onecard.core.errors import ModelNotFoundError
from onecard.core.extras import require

if TYPE_CHECKING:
    import torch

__all__ = ["LORA_FILE", "LORA_TARGETS", "load_pipeline", "add_lora", "cache_latents", "encode_prompts",
           "noise_loss", "save_lora"]

LORA_FILE = "pytorch_lora_weights.safetensors"  # the name `load_lora_weights(folder)` looks for
LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]  # diffusers' LoRA training scripts


def load_pipeline(base: str | Path, device: str, dtype: torch.dtype) -> Any:
    """A diffusers text-to-image pipeline from a folder, on `device` in `dtype`, every part frozen."""
    diffusers = require("diffusers", "diffuse")
    folder = Path(base).expanduser()
    if not (folder / "model_index.json").is_file():
        raise ModelNotFoundError(
            f"{folder} is not a diffusers pipeline folder (no model_index.json)",
            "pass the folder of a pipeline saved by diffusers (unet/, vae/, text_encoder/, tokenizer/, scheduler/)")
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(folder), torch_dtype=dtype, safety_checker=None)
    pipe.to(device)
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        part.requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def add_lora(unet: Any, rank: int, alpha: int | None = None) -> Any:
    """Add a trainable LoRA (fp32, Gaussian A, zero B: the UNet is unchanged until it trains) to the attention
    projections of `unet`; returns its peft `LoraConfig` (saved beside the weights as metadata)."""
    import torch
    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian", target_modules=LORA_TARGETS)
    unet.add_adapter(config)
    for p in unet.parameters():
        if p.requires_grad:  # the LoRA trains in fp32 whatever the weights' dtype (diffusers' cast_training_params)
            p.data = p.data.to(torch.float32)
    return config


def cache_latents(vae: Any, pixels: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """The VAE latents of (N, 3, H, W) pixels in [-1, 1], scaled as the UNet sees them: (N, 4, H/8, W/8), float32.

    The posterior's mean, once: the VAE is frozen, so every epoch would encode the same images again (kohya's
    cache_latents).
    """
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(pixels), batch_size):
            x = pixels[i:i + batch_size].to(vae.device, vae.dtype)
            out.append(vae.encode(x).latent_dist.mean.float() * vae.config.scaling_factor)
    return torch.cat(out)


def encode_prompts(tokenizer: Any, text_encoder: Any, prompts: list[str]) -> torch.Tensor:
    """The text encoder's last hidden states of `prompts`, padded to the tokenizer's length: (N, 77, C), float32."""
    import torch

    ids = tokenizer(prompts, padding="max_length", truncation=True, max_length=tokenizer.model_max_length,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        hidden: torch.Tensor = text_encoder(ids.to(text_encoder.device))[0].float()
    return hidden


def noise_loss(unet: Any, scheduler: Any, latents: torch.Tensor, embeddings: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """The denoising loss of one batch: noise the latents at random timesteps, MSE of the UNet's prediction
    against the scheduler's target (the noise for epsilon prediction, the velocity for v-prediction)."""
    import torch
    import torch.nn.functional as F

    B = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator, device=latents.device)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (B,), generator=generator, device=latents.device)
    noisy = scheduler.add_noise(latents, noise, t)
    v_prediction = scheduler.config.prediction_type == "v_prediction"
    target = scheduler.get_velocity(latents, noise, t) if v_prediction else noise
    pred = unet(noisy.to(unet.dtype), t, encoder_hidden_states=embeddings.to(unet.dtype)).sample
    return F.mse_loss(pred.float(), target.float())


def save_lora(unet: Any, lora_config: Any, folder: str | Path) -> Path:
    """Write the UNet's LoRA as `folder/pytorch_lora_weights.safetensors` (diffusers' own writer, with the rank and
    alpha as metadata), atomically: a Ctrl-C or a crash mid-write leaves the previous file whole."""
    from peft.utils import get_peft_model_state_dict

    diffusers = require("diffusers", "diffuse")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layers = diffusers.utils.convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        diffusers.StableDiffusionPipeline.save_lora_weights(tmp, unet_lora_layers=layers, safe_serialization=True,
                                                  unet_lora_adapter_metadata=lora_config.to_dict())
        os.replace(Path(tmp) / LORA_FILE, folder / LORA_FILE)
    return folder / LORA_FILE

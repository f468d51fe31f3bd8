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
           "noise_loss", "sdxl_time_ids", "save_lora"]

LORA_FILE = "pytorch_lora_weights.safetensors"  # the name `load_lora_weights(folder)` looks for
LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]  # diffusers' LoRA training scripts


def load_pipeline(base: str | Path, device: str, dtype: torch.dtype, place: bool = True) -> Any:
    """A diffusers text-to-image pipeline from `base` (`onecard.diffuse.base.resolve_base`), in `dtype`, every part
    frozen; on `device` unless `place` is False (CPU offload places it itself)."""
    from onecard.core.sources import hub_snapshot
    from onecard.diffuse.base import resolve_base

    diffusers = require("diffusers", "diffuse")
    found = resolve_base(str(base))
    extra = {"safety_checker": None} if found.family == "sd15" else {}
    if found.kind == "folder":
        pipe = diffusers.DiffusionPipeline.from_pretrained(str(found.path), torch_dtype=dtype, **extra)
    else:
        cls = diffusers.StableDiffusionXLPipeline if found.family == "sdxl" else diffusers.StableDiffusionPipeline
        configs = hub_snapshot(found.hub_id or "")
        try:
            pipe = cls.from_single_file(str(found.path), torch_dtype=dtype, config=str(configs or found.hub_id),
                                        local_files_only=True, **extra)
        except (OSError, ValueError) as e:
            raise ModelNotFoundError(
                f"{found.path} does not load as a single-file {found.family} checkpoint: {e}",
                f"it needs the base's configs in the cache: run `huggingface-cli download {found.hub_id} --include "
                "'*.json' '*.txt'` once (online), or pass a diffusers pipeline folder") from e
    if place:
        pipe.to(device)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if getattr(pipe, name, None) is not None:
            getattr(pipe, name).requires_grad_(False)
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


def encode_prompts(pipe: Any, prompts: list[str]) -> dict[str, torch.Tensor]:
    """What the UNet is conditioned on, per prompt, float32: `hidden` (N, 77, C), the text encoder's last hidden
    states; for SDXL the penultimate states of both encoders side by side, and `pooled` (N, P), the second encoder's
    projected output (diffusers' train_dreambooth_lora_sdxl.py `encode_prompt`)."""
    import torch

    pairs = [(pipe.tokenizer, pipe.text_encoder)]
    if getattr(pipe, "text_encoder_2", None) is not None:
        pairs.append((pipe.tokenizer_2, pipe.text_encoder_2))
    hidden, pooled = [], None
    with torch.no_grad():
        for tokenizer, encoder in pairs:
            ids = tokenizer(prompts, padding="max_length", truncation=True, max_length=tokenizer.model_max_length,
                            return_tensors="pt").input_ids
            out = encoder(ids.to(encoder.device), output_hidden_states=len(pairs) > 1)
            hidden.append((out.hidden_states[-2] if len(pairs) > 1 else out[0]).float())
            pooled = out[0].float()
    if len(pairs) == 1:
        return {"hidden": hidden[0]}
    assert pooled is not None
    return {"hidden": torch.cat(hidden, dim=-1), "pooled": pooled}


def sdxl_time_ids(height: int, width: int, n: int) -> torch.Tensor:
    """SDXL's size conditioning (original size, crop top-left, target size) of `n` images resized and center-cropped
    to height x width: (n, 6), as diffusers' SDXL LoRA script builds it for a center crop."""
    import torch

    return torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32).repeat(n, 1)


def noise_loss(unet: Any, scheduler: Any, latents: torch.Tensor, cond: dict[str, torch.Tensor],
               generator: torch.Generator | None = None, noise_offset: float = 0.0,
               snr_gamma: float | None = None) -> torch.Tensor:
    """The denoising loss of one batch, per image (B,): noise the latents at random timesteps, MSE of the UNet's
    prediction against the scheduler's target (the noise for epsilon prediction, the velocity for v-prediction).

    `cond` is `encode_prompts`' output for the batch (with `time_ids` for SDXL). `noise_offset` adds a per-channel
    constant to the noise (darker darks and brighter brights; Guttenberg 2023, diffusers' --noise_offset).
    `snr_gamma` weights each timestep by min(SNR, gamma) / SNR (Min-SNR, Hang et al. 2023, arXiv:2303.09556;
    / (SNR + 1) for v-prediction), as diffusers' --snr_gamma does.
    """
    import torch

    B = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator, device=latents.device)
    if noise_offset:
        noise = noise + noise_offset * torch.randn((B, latents.shape[1], 1, 1), generator=generator,
                                                   device=latents.device)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (B,), generator=generator, device=latents.device)
    noisy = scheduler.add_noise(latents, noise, t)
    v_prediction = scheduler.config.prediction_type == "v_prediction"
    target = scheduler.get_velocity(latents, noise, t) if v_prediction else noise
    added = None
    if "pooled" in cond:
        added = {"text_embeds": cond["pooled"].to(unet.dtype), "time_ids": cond["time_ids"].to(unet.dtype)}
    pred = unet(noisy.to(unet.dtype), t, encoder_hidden_states=cond["hidden"].to(unet.dtype),
                added_cond_kwargs=added).sample
    per_image = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    if snr_gamma is not None:
        from diffusers.training_utils import compute_snr

        snr = compute_snr(scheduler, t)
        weight = torch.clamp(snr, max=snr_gamma) / (snr + 1 if v_prediction else snr)
        per_image = per_image * weight
    return per_image


def save_lora(unet: Any, lora_config: Any, folder: str | Path) -> Path:
    """Write the UNet's LoRA as `folder/pytorch_lora_weights.safetensors` (diffusers' own writer, with the rank and
    alpha as metadata), atomically: a Ctrl-C or a crash mid-write leaves the previous file whole."""
    from peft.utils import get_peft_model_state_dict

    diffusers = require("diffusers", "diffuse")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layers = diffusers.utils.convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    sdxl = unet.config.addition_embed_type == "text_time"
    writer = diffusers.StableDiffusionXLPipeline if sdxl else diffusers.StableDiffusionPipeline
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        writer.save_lora_weights(tmp, unet_lora_layers=layers, safe_serialization=True,
                                                  unet_lora_adapter_metadata=lora_config.to_dict())
        os.replace(Path(tmp) / LORA_FILE, folder / LORA_FILE)
    return folder / LORA_FILE

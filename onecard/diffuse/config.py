"""Configs of `onecard diffuse`: data check, LoRA training, sampling, export."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["CheckConfig", "DiffuseConfig", "SampleConfig", "ExportConfig", "EvalConfig", "CaptionConfig"]


class CheckConfig(BaseModel):
    """`onecard diffuse data check DIR`: every problem of an image folder with `.txt` captions, before training."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="folder of training images, each with a caption in a .txt file of the same name")
    resolution: int = Field(512, ge=8, description="training resolution in pixels; a smaller image side is a warning")
    sheet: str | None = Field(None, description="write a contact sheet PNG here: every image as a thumbnail under its file name (not inside the data folder, where it would count as a training image)")
    near_distance: int = Field(6, ge=0, le=64, description="near-duplicates: perceptual hashes (64-bit dHash) at most this many bits apart")


class DiffuseConfig(BaseModel):
    """`onecard diffuse train`: a LoRA on the UNet's attention projections of a diffusers pipeline, trained with the
    noise-prediction loss on cached latents, recorded as a run, saved as `pytorch_lora_weights.safetensors`."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field(description="base model: sd15, sdxl (their hub ids, from the local cache), a diffusers pipeline folder, a hub id in the local cache, or a single .safetensors checkpoint")
    data: str = Field(description="folder of training images with .txt captions (checked before training)")
    token: str = Field("sks", description="trigger token put before each caption, and used alone for a missing one")
    rank: int = Field(8, ge=1, description="LoRA rank")
    alpha: int | None = Field(None, ge=1, description="LoRA alpha: the LoRA is scaled by alpha / rank (None: the rank, a scale of 1)")
    resolution: int = Field(512, ge=8, description="training image side in pixels (images are resized and center-cropped)")
    max_steps: int = Field(500, ge=1, description="optimizer steps")
    batch_size: int = Field(1, ge=1, description="images per step")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate")
    save_every: int = Field(0, ge=0, description="write the LoRA every N steps as well as at the end (0: at the end)")
    micro_batch_size: int | Literal["auto"] = Field("auto", description="images per forward pass, the rest by gradient accumulation; auto: fit's plan for the card (the whole batch without one)")
    gradient_checkpointing: bool | Literal["auto"] = Field("auto", description="recompute the UNet's activations in backward; auto: fit's plan for the card (off without one)")
    optimizer: Literal["auto", "adamw", "adamw8bit"] = Field("auto", description="adamw, or adamw8bit (bitsandbytes, CUDA only); auto: fit's plan for the card (adamw without one)")
    gpu: str | None = Field(None, description="card to plan the memory for (4070ti, rtx-3060...); None: the detected one")
    class_prompt: str | None = Field(None, description="prior preservation: the class prompt ('a photo of a dog'); its images, drawn by the base once and cached, train beside yours")
    class_images: int = Field(50, ge=1, description="prior preservation: how many class images")
    prior_weight: float = Field(1.0, ge=0, description="prior preservation: weight of the class images' loss")
    buckets: bool = Field(False, description="aspect-ratio buckets (kohya): each image resized and cropped to the bucket of ~resolution² pixels nearest its aspect ratio; a batch comes from one bucket")
    noise_offset: float = Field(0.0, ge=0, description="noise offset (0.05-0.1 lets the model draw darker darks and brighter brights; 0: off)")
    snr_gamma: float | None = Field(None, gt=0, description="Min-SNR loss weighting gamma (5.0 is the paper's; None: off)")
    validate_every: int = Field(0, ge=0, description="draw the validation grid every N steps and at the end (0: never)")
    validation_seeds: int = Field(4, ge=1, description="images per validation prompt (seeds 0, 1, ...)")
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = Field("auto", description="weights' dtype; auto: what the device runs best (fp32 on CPU); the LoRA trains in fp32")
    device: str = Field("auto", description="auto (the GPU if there is one), cuda, cuda:1, cpu")
    seed: int = Field(0, description="random seed (LoRA init, noise, timesteps, batch order, class images)")

    @field_validator("micro_batch_size")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"micro_batch_size must be auto or at least 1, got {value}")
        return value


class SampleConfig(BaseModel):
    """`onecard diffuse sample RUN|BASE --prompt ...`: images from a base pipeline with LoRAs at their weights."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="a diffuse train run (id, unique prefix, run directory or 'last': its base with its LoRA), or a base model (sd15, sdxl, a pipeline folder, a cached hub id, a .safetensors checkpoint)")
    prompt: str = Field(description="what to draw (put the run's trigger token in it, e.g. 'a photo of sks dog')")
    negative_prompt: str | None = Field(None, description="what to steer away from")
    lora: list[str] = Field(default_factory=list, description="more LoRAs to load, each PATH[:WEIGHT] (a .safetensors file or the folder of a pytorch_lora_weights.safetensors; weight 1.0 if not given)")
    weight: float = Field(1.0, description="weight of the run's own LoRA (0: the base model's output)")
    steps: int = Field(30, ge=1, description="denoising steps")
    guidance: float = Field(7.5, ge=0, description="classifier-free guidance scale")
    resolution: int | None = Field(None, ge=8, description="image side in pixels, a multiple of 8 (None: the UNet's native size)")
    batch: int = Field(1, ge=1, description="images, with seeds seed, seed+1, ...")
    seed: int = Field(0, description="seed of the first image")
    out: str = Field("diffuse-samples", description="folder for the PNGs and samples.json (prompt, seeds, LoRAs)")
    vae_slicing: bool | Literal["auto"] = Field("auto", description="decode the batch one image at a time; auto: fit's plan for the card")
    vae_tiling: bool | Literal["auto"] = Field("auto", description="decode in tiles; auto: fit's plan for the card")
    offload: Literal["auto", "none", "model", "sequential"] = Field("auto", description="CPU offload (CUDA): model (one component on the GPU at a time) or sequential (one layer); auto: fit's plan for the card")
    attention_slicing: bool | Literal["auto"] = Field("auto", description="attention a few heads at a time; auto: fit's plan for the card")
    gpu: str | None = Field(None, description="card to plan the memory for (4070ti, rtx-3060...); None: the detected one")
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = Field("auto", description="weights' dtype; auto: what the device runs best")
    device: str = Field("auto", description="auto (the GPU if there is one), cuda, cuda:1, cpu")


class ExportConfig(BaseModel):
    """`onecard diffuse export RUN --format kohya|diffusers`: the run's LoRA as one .safetensors file to ship."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(description="a diffuse train run: id, unique prefix, run directory or 'last'")
    format: Literal["kohya", "diffusers"] = Field("kohya", description="kohya: the layout AUTOMATIC1111/Forge and ComfyUI load (lora_unet_..., alpha stored); diffusers: pytorch_lora_weights.safetensors as diffusers saves it")
    out: str | None = Field(None, description="file to write (default: RUN_DIR/export/<run id>-<format>.safetensors)")


class EvalConfig(BaseModel):
    """`onecard diffuse eval RUN`: CLIP score of the trigger and class prompts, similarity to the training images,
    the class prompt's drift, with the LoRA and without (the base)."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(description="a diffuse train run: id, unique prefix, run directory or 'last'")
    clip: str = Field("openai/clip-vit-large-patch14", description="CLIP model: a folder or a cached hub id")
    prompt: str | None = Field(None, description="the subject prompt, with the trigger token (None: the run's first caption)")
    images: int = Field(4, ge=1, description="images per prompt, tuned and base alike (seeds 0, 1, ...)")
    steps: int = Field(30, ge=1, description="denoising steps")
    guidance: float = Field(7.5, ge=0, description="classifier-free guidance scale")
    resolution: int | None = Field(None, ge=8, description="image side in pixels (None: the run's training resolution)")
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = Field("auto", description="weights' dtype; auto: what the device runs best")
    device: str = Field("auto", description="auto (the GPU if there is one), cuda, cuda:1, cpu")


class CaptionConfig(BaseModel):
    """`onecard diffuse caption DIR`: a caption for every image that has none, from a template or a local VLM."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="folder of training images")
    token: str = Field("sks", description="trigger token; the template's {token}")
    template: str = Field("a photo of {token}", description="the caption written where a VLM is not used; {token} is the trigger token")
    vlm: str | None = Field(None, description="caption with a local vision-language model through onecard.llm (a .gguf with --mmproj for llama.cpp, a folder for transformers, an Ollama tag); None: the template")
    backend: Literal["llamacpp", "ollama", "openai", "transformers"] = Field("llamacpp", description="the runtime of --vlm")
    mmproj: str | None = Field(None, description="llama.cpp: the VLM's projector .gguf")
    overwrite: bool = Field(False, description="replace the captions that exist too")

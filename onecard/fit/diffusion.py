"""Stable Diffusion 1.5 and SDXL (diffusers): catalog facts and the memory estimator.

A pipeline call runs three phases one after the other: text encoders, the UNet loop (classifier-free guidance
doubles the batch), the VAE decode. The peak is the weights that sit on the GPU plus the working memory of the
heaviest phase. Working memory comes from the model graphs: `benchmarks/fit_diffusion_trace.py` builds the UNet and
VAE from their config.json values and counts the live tensor bytes of a diffusers 0.31 forward (and, for training,
forward + backward with LoRA on the attention projections) on fake tensors, no GPU needed; it prints each constant
below beside its traced value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from onecard.core.gpus import GpuSpec
from onecard.fit.estimate import GIB, Estimate
from onecard.fit.job import FitJob
from onecard.fit.overheads import ALLOC_SLACK, CUDA_CONTEXT_GIB

__all__ = ["DiffusionArch", "find", "estimate", "CATALOG", "UNET_CONFIGS", "VAE_CONFIG", "TEXT_CONFIGS",
           "SAFETY_CHECKER_VISION"]

# VAE decoder (block_out_channels [128, 256, 512, 512]): in the last up block a 256-channel map at full
# resolution is alive three times (resnet input kept for the residual, GroupNorm output, SiLU output); the trace
# (benchmarks/fit_diffusion_trace.py) gives 768 elements per output pixel. cuDNN's convolution workspace for that
# layer is taken as one more map of the same size (assumption; the SDXL blog rows put it at 0.8 of a map).
VAE_DECODE_ELEMS_PER_PX = 4 * 256
# What PyTorch's caching allocator keeps besides, on a card with room (`Estimate.cache_gib`): the decoder's maps grow
# block by block (each up block doubles the side), so no freed smaller map's segment holds the next, larger one and
# each stage reserves afresh; the allocator gives the free segments back when a cudaMalloc fails, so they are not
# what has to fit. A replay of whole SD 1.5 and SDXL calls through the allocator's rules
# (benchmarks/fit_diffusion_replay.py: batch 1, 2 and 4) puts the reserved peak above the least capacity the call
# needs by this many elements per output pixel of the decode (median of the six).
VAE_DECODE_CACHE_ELEMS_PER_PX = 668
VAE_ENCODE_SHARE = 0.5  # encoding needs about half the decoder's working memory (InvokeAI vae_working_memory.py)


@dataclass(frozen=True)
class DiffusionArch:
    """One text-to-image pipeline: parameter counts of its parts and the measured working-memory terms."""

    key: str
    native_px: int  # default resolution (unet sample_size x 8)
    unet: int
    text_encoders: int
    vae: int
    safety_checker: int  # loaded and run by default in the SD 1.5 pipeline
    vae_force_upcast: bool  # vae config force_upcast: the pipeline decodes in fp32 even in fp16
    heads_at_top: int  # attention heads at the highest-resolution attention level
    top_attn_downsample: int  # latent downsampling of that level (1: 64x64 latent for SD1.5 at 512)
    # Working-memory terms per sample at native_px, traced by benchmarks/fit_diffusion_trace.py (diffusers 0.31):
    unet_infer_gib: float  # UNet forward, fp16, SDPA (no score matrix)
    unet_train_gib: float  # forward + backward, frozen fp16 UNet, fp32 LoRA r=4 under fp16 autocast, no checkpointing
    unet_train_ckpt_gib: float  # same with unet.enable_gradient_checkpointing()
    lora_params_per_rank: int  # LoRA on attention to_q, to_k, to_v, to_out.0 (diffusers train_*_lora scripts)
    largest_leaf: int  # parameters of the UNet's largest leaf module (a 3x3 conv 2560 -> 1280; fit_diffusion_trace.py)
    aliases: tuple[str, ...]
    source: str


CATALOG: dict[str, DiffusionArch] = {
    "sd15": DiffusionArch(
        key="sd15",
        native_px=512,
        unet=859_520_964,
        text_encoders=123_060_480,
        vae=83_653_863,
        safety_checker=303_966_208,
        vae_force_upcast=False,
        heads_at_top=8,
        top_attn_downsample=1,
        unet_infer_gib=0.0635,
        unet_train_gib=0.859,
        unet_train_ckpt_gib=0.226,
        lora_params_per_rank=199_296,
        largest_leaf=29_492_480,
        aliases=(
            "sd-1.5",
            "sd1.5",
            "stable-diffusion-v1-5",
            "runwayml/stable-diffusion-v1-5",
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
        ),
        source="stable-diffusion-v1-5 model_index + unet/text_encoder/vae config.json (diffusers), "
        "CompVis/stable-diffusion-safety-checker (CLIP ViT-L/14 vision + projection); counts from the configs",
    ),
    "sdxl": DiffusionArch(
        key="sdxl",
        native_px=1024,
        unet=2_567_463_684,
        text_encoders=123_060_480 + 694_659_840,
        vae=83_653_863,
        safety_checker=0,
        vae_force_upcast=True,
        heads_at_top=10,
        top_attn_downsample=2,
        unet_infer_gib=0.154,
        unet_train_gib=6.10,
        unet_train_ckpt_gib=0.512,
        lora_params_per_rank=1_451_520,
        largest_leaf=29_492_480,
        aliases=(
            "sdxl-base",
            "sdxl-base-1.0",
            "stable-diffusion-xl-base-1.0",
            "stabilityai/stable-diffusion-xl-base-1.0",
        ),
        source="stabilityai/stable-diffusion-xl-base-1.0 unet/text_encoder/text_encoder_2/vae config.json; "
        "SDXL report arXiv:2307.01952 (2.6B UNet, CLIP ViT-L + OpenCLIP ViT-bigG)",
    ),
}


# The models' config.json values that differ from diffusers' / transformers' class defaults, for the tools that build
# them with random weights (`--measure`, benchmarks/fit_diffusion_trace.py): runwayml/stable-diffusion-v1-5 and
# stabilityai/stable-diffusion-xl-base-1.0 unet/, vae/, text_encoder*/ config.json, and
# CompVis/stable-diffusion-safety-checker config.json (CLIP ViT-L/14 vision tower, projection 768).
UNET_CONFIGS: dict[str, dict[str, Any]] = {
    "sd15": dict(sample_size=64, cross_attention_dim=768, attention_head_dim=8),
    "sdxl": dict(
        sample_size=128, cross_attention_dim=2048, attention_head_dim=[5, 10, 20], use_linear_projection=True,
        block_out_channels=[320, 640, 1280], transformer_layers_per_block=[1, 2, 10],
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
    ),
}
VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=[128, 256, 512, 512],
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4, sample_size=512,
)
_CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
               num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
_CLIP_G = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
               num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280)
TEXT_CONFIGS: dict[str, list[dict[str, Any]]] = {"sd15": [_CLIP_L], "sdxl": [_CLIP_L, _CLIP_G]}
SAFETY_CHECKER_VISION: dict[str, Any] = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                             num_attention_heads=16, patch_size=14, image_size=224)


def find(name: str) -> DiffusionArch | None:
    """Catalog entry for a name or hub id (sd15, sdxl, stabilityai/stable-diffusion-xl-base-1.0); None if unknown."""
    key = name.strip().lower()
    for arch in CATALOG.values():
        if key == arch.key or key in arch.aliases:
            return arch
    return None


def _vae_decode_bytes(arch: DiffusionArch, job: FitJob, px: int, vae_b: int) -> tuple[float, float, str]:
    """Working memory of `vae.decode` for the batch and the allocator cache it leaves on a card with room: slicing
    decodes one image at a time, tiling bounds the side."""
    images = 1 if job.vae_slicing else job.batch
    side = min(px, arch.native_px) if job.vae_tiling else px  # diffusers tiles at the VAE's sample_size
    how = ("sliced, " if job.vae_slicing else "") + (f"tiled {side}px, " if job.vae_tiling and side < px else "")
    dec = VAE_DECODE_ELEMS_PER_PX * side * side * images * vae_b
    cache = VAE_DECODE_CACHE_ELEMS_PER_PX * side * side * images * vae_b
    return dec, cache, f"VAE decode of {images} image(s) at {side}px {how}in {'fp32' if vae_b == 4 else 'fp16'}"


def _unet_working(arch: DiffusionArch, job: FitJob, px: int, act_b: int) -> tuple[float, str]:
    """UNet forward working memory at batch x2 (CFG), plus the attention score matrices the kernel materialises."""
    samples = 2 * job.batch
    scale = (px / arch.native_px) ** 2
    base = arch.unet_infer_gib * GIB * samples * scale * act_b / 2
    # Top attention level: tokens = (px/8/downsample)^2; eager/default attention keeps scores + softmax output.
    tokens = (px // 8 // arch.top_attn_downsample) ** 2
    rows = {"eager": samples * arch.heads_at_top, "slicing": max(1, arch.heads_at_top // 2)}.get(job.attention, 0)
    scores = 2 * rows * tokens**2 * act_b
    kernel = {
        "eager": "default attention (scores materialised)",
        "slicing": "attention slicing (half the heads at a time)",
    }
    return (
        base + scores,
        f"UNet at batch {samples} (CFG doubles it), {kernel.get(job.attention, job.attention + ' (no score matrix)')}",
    )


def _infer(arch: DiffusionArch, job: FitJob, notes: list[str]) -> tuple[dict[str, float], float, float]:
    """(parts in bytes, GiB offloaded to host RAM, bytes of allocator cache kept on a card with room)."""
    b = 4 if job.quant == "fp32" else 2
    px = job.resolution or arch.native_px
    vae_b = 4 if (b == 4 or arch.vae_force_upcast) else 2
    if vae_b == 4 and b == 2:
        notes.append("the SDXL VAE overflows in fp16 (force_upcast): diffusers upcasts it and decodes in fp32")
    w_te = arch.text_encoders * b
    w_unet = arch.unet * b
    w_vae = arch.vae * vae_b
    # diffusers keeps the safety checker out of both offload modes: enable_model_cpu_offload and
    # enable_sequential_cpu_offload move every component in `_exclude_from_cpu_offload` (["safety_checker"] in the
    # SD 1.x pipelines) to the GPU whole and leave it there (pipelines/pipeline_utils.py).
    w_sc = arch.safety_checker * b
    unet_work, unet_note = _unet_working(arch, job, px, b)
    vae_work, cache, vae_note = _vae_decode_bytes(arch, job, px, vae_b)
    notes += [f"{job.batch} image(s) at {px}x{px}, weights {'fp32' if b == 4 else 'fp16'}", unet_note, vae_note]
    if job.offload == "none":
        resident = w_te + w_unet + w_vae + w_sc
        phase = max((unet_work, "unet"), (vae_work, "vae"))
        notes.append(f"peak in the {phase[1].upper()} phase; every component stays on the GPU")
        return {"weights": resident, "activations": phase[0]}, 0.0, cache
    if job.offload == "model":
        phases = [(w_te, 0.0, "text encoders"), (w_unet, unet_work, "UNet"), (w_vae, vae_work, "VAE")]
        w, work, name = max(phases, key=lambda p: p[0] + p[1])
        notes.append(f"model offload: only the active component is on the GPU; the peak is the {name} phase"
                     + (", beside the safety checker, which diffusers keeps on the GPU" if w_sc else ""))
        return {"weights": w + w_sc, "activations": work}, (w_te + w_unet + w_vae) / GIB, cache
    # sequential: accelerate moves each leaf module's weights in right before its forward and out after.
    largest_layer = arch.largest_leaf * b
    notes.append(f"sequential offload: weights streamed per leaf module (the largest, {arch.largest_leaf / 1e6:.1f}M "
                 "parameters, on the GPU at a time)" + ("; the safety checker stays on the GPU whole" if w_sc else ""))
    return ({"weights": largest_layer + w_sc, "activations": max(unet_work, vae_work)}, (w_te + w_unet + w_vae) / GIB,
            cache)


def _train(arch: DiffusionArch, job: FitJob, notes: list[str]) -> dict[str, float]:
    b = 2  # frozen weights in fp16 (--mixed_precision fp16), LoRA params in fp32
    px = job.resolution or arch.native_px
    vae_b = 4 if arch.vae_force_upcast else 2
    frozen = (arch.unet + arch.text_encoders) * b + (0 if job.cached_latents else arch.vae * vae_b)
    lora = arch.lora_params_per_rank * job.lora_rank
    opt = "adamw" if job.optimizer == "auto" else job.optimizer
    opt_b = 2 if "8bit" in opt else (0 if opt == "sgd" else 8)
    per_sample = arch.unet_train_ckpt_gib if job.grad_ckpt else arch.unet_train_gib
    acts = per_sample * GIB * job.batch * (px / arch.native_px) ** 2
    encode = 0.0 if job.cached_latents else VAE_ENCODE_SHARE * VAE_DECODE_ELEMS_PER_PX * px * px * job.batch * vae_b
    notes += [
        f"LoRA rank {job.lora_rank} on attention q/k/v/out: {lora / 1e6:.2f}M trainable params (fp32), optimizer {opt}",
        "frozen UNet + text encoders in fp16; "
        + ("latents cached, VAE not loaded" if job.cached_latents else "the VAE encodes each batch"),
        f"activations {per_sample:.3f} GiB per sample at {arch.native_px}px "
        f"({'with' if job.grad_ckpt else 'without'} gradient checkpointing), scaled to {px}px, batch {job.batch}",
    ]
    return {
        "weights": frozen,
        "activations": max(acts, encode),
        "adapters": lora * 4,
        "gradients": lora * 4,
        "optimizer": lora * opt_b,
    }


def estimate(arch: DiffusionArch, job: FitJob, card: GpuSpec | None) -> Estimate:
    """Peak memory of a diffusers text-to-image call (`job.job == "infer"`) or a LoRA training step."""
    notes = [
        f"{arch.key}: UNet {arch.unet / 1e6:.1f}M, text encoders {arch.text_encoders / 1e6:.1f}M, "
        f"VAE {arch.vae / 1e6:.1f}M params"
    ]
    cpu_gib = cache = 0.0
    if job.job == "train":
        parts = _train(arch, job, notes)
    else:
        parts, cpu_gib, cache = _infer(arch, job, notes)
    work = parts["activations"]
    return Estimate(
        parts={k: v / GIB for k, v in parts.items()},
        slack_gib=ALLOC_SLACK * work / GIB,
        context_gib=CUDA_CONTEXT_GIB,
        assumptions=notes,
        cpu_gib=cpu_gib,
        cache_gib=cache / GIB,
    )

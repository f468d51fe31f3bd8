"""Where onecard/fit/diffusion.py's working-memory constants come from: diffusers models traced on fake tensors.

    python benchmarks/fit_diffusion_trace.py [--arch sd15 sdxl] [--skip-train]

Builds the SD 1.5 and SDXL UNet and VAE from their config.json values (no weights: meta device, then FakeTensors)
and runs them under onecard.fit.trace's live-storage counter, which needs no GPU:

- unet_infer_gib: UNet forward, fp16, PyTorch SDPA, inference mode, per sample (a CFG call runs 2 per image);
- unet_train_gib / unet_train_ckpt_gib: forward + backward of the frozen fp16 UNet with LoRA (r=4) on attention
  to_q/to_k/to_v/to_out.0 (diffusers examples/text_to_image/train_text_to_image_lora.py), per sample, without and
  with `enable_gradient_checkpointing()`;
- VAE decode: `vae.decode` of one latent, fp16 (fp32 for the SDXL VAE's force_upcast), as elements per output pixel.

Each figure is the traced peak minus the weights (and the adapters): tensor bytes only, no allocator rounding. It
prints the table and the constants in DiffusionArch beside it. Needs torch, diffusers and peft
(`pip install 'onecard[diffuse]'`); diffusers 0.31.0 gave the printed constants (0.42.1: the same inference figures).
"""

from __future__ import annotations

import argparse
from typing import Any

from onecard.core.extras import require
from onecard.fit import diffusion
from onecard.fit.estimate import GIB
from onecard.fit.trace import _dispatch_mode, _fake_params, _LiveBytes

UNET, VAE = diffusion.UNET_CONFIGS, diffusion.VAE_CONFIG
TEXT_TOKENS, TEXT_DIM = 77, {"sd15": 768, "sdxl": 2048}


def _traced(model: Any, run: Any, trainable: bool = False) -> tuple[float, float]:
    """(peak working bytes above weights/adapters, weight bytes) of `run(model)` on fake tensors."""
    torch = require("torch", "fit")
    from torch._subclasses.fake_tensor import FakeTensorMode

    fake_mode = FakeTensorMode()
    _fake_params(model, fake_mode)
    counter = _LiveBytes()
    for p in model.parameters():
        counter.add(p, "adapters" if p.requires_grad else "weights")
    for b in model.buffers():
        counter.add(b, "weights")
    if trainable:
        for p in model.parameters():
            if p.requires_grad:
                p.register_post_accumulate_grad_hook(lambda p: counter.add(p.grad, "gradients"))
    with fake_mode, _dispatch_mode(counter):
        if trainable:
            run(model)
        else:
            with torch.inference_mode():
                run(model)
    fixed = counter.at_peak.get("weights", 0) + counter.at_peak.get("adapters", 0)
    return counter.peak - fixed, fixed


def _unet(arch: str, dtype: Any) -> Any:
    torch = require("torch", "fit")
    diffusers = require("diffusers", "diffuse")
    with torch.device("meta"):
        return diffusers.UNet2DConditionModel(**UNET[arch]).to(dtype)  # type: ignore[arg-type]


def _unet_inputs(arch: str, batch: int, dtype: Any) -> tuple[Any, ...]:
    torch = require("torch", "fit")
    side = int(UNET[arch]["sample_size"])  # type: ignore[call-overload]
    x = torch.randn(batch, 4, side, side, dtype=dtype)
    text = torch.randn(batch, TEXT_TOKENS, TEXT_DIM[arch], dtype=dtype)
    added = {"text_embeds": torch.randn(batch, 1280, dtype=dtype), "time_ids": torch.randn(batch, 6, dtype=dtype)}
    return x, torch.tensor([999] * batch), text, (added if arch == "sdxl" else None)


def unet_infer(arch: str, batch: int = 2) -> float:
    """UNet forward working memory per sample (GiB), fp16, SDPA."""
    torch = require("torch", "fit")
    model = _unet(arch, torch.float16).eval()

    def run(m: Any) -> None:
        x, t, text, added = _unet_inputs(arch, batch, torch.float16)
        m(x, t, encoder_hidden_states=text, added_cond_kwargs=added)

    work, _ = _traced(model, run)
    return work / batch / GIB


def unet_train(arch: str, ckpt: bool, batch: int = 1) -> float:
    """Frozen fp16 UNet + LoRA r=4 on attention: forward + backward working memory per sample (GiB)."""
    torch = require("torch", "fit")
    peft = require("peft", "diffuse")
    model = _unet(arch, torch.float16)
    model.requires_grad_(False)
    model = peft.inject_adapter_in_model(
        peft.LoraConfig(r=4, lora_alpha=4, target_modules=["to_k", "to_q", "to_v", "to_out.0"]), model)
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()  # train_text_to_image_lora.py casts the trainable LoRA params to fp32
    if ckpt:
        model.enable_gradient_checkpointing()
    model.train()

    def run(m: Any) -> None:
        x, t, text, added = _unet_inputs(arch, batch, torch.float16)
        with torch.autocast("cpu", dtype=torch.float16):  # accelerate --mixed_precision fp16 (autocast on CUDA)
            out = m(x, t, encoder_hidden_states=text, added_cond_kwargs=added).sample
        out.float().pow(2).mean().backward()

    work, _ = _traced(model, run, trainable=True)
    return work / batch / GIB


def vae_decode_elems_per_px(arch: str) -> float:
    """Working elements per output pixel of `vae.decode` for one 64x64 latent (512 px)."""
    torch = require("torch", "fit")
    diffusers = require("diffusers", "diffuse")
    dtype = torch.float32 if diffusion.CATALOG[arch].vae_force_upcast else torch.float16
    with torch.device("meta"):
        vae = diffusers.AutoencoderKL(**VAE).to(dtype).eval()  # type: ignore[arg-type]

    def run(m: Any) -> None:
        m.decode(torch.randn(1, 4, 64, 64, dtype=dtype))

    work, _ = _traced(vae, run)
    return work / (512 * 512) / (4 if dtype == torch.float32 else 2)


def largest_leaf(arch: str) -> int:
    """Parameters of the UNet's largest leaf module: what sequential CPU offload holds on the GPU at once."""
    model = _unet(arch, require("torch", "fit").float16)
    return max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["sd15", "sdxl"], choices=sorted(diffusion.CATALOG))
    parser.add_argument("--skip-train", action="store_true", help="only the inference figures (faster)")
    args = parser.parse_args()
    print(f"{'figure':34} {'traced':>9} {'constant':>9}")
    for arch in args.arch:
        spec = diffusion.CATALOG[arch]
        rows = [("unet_infer_gib", unet_infer(arch), spec.unet_infer_gib),
                ("largest_leaf", largest_leaf(arch), spec.largest_leaf)]
        if not args.skip_train:
            rows += [("unet_train_gib", unet_train(arch, ckpt=False), spec.unet_train_gib),
                     ("unet_train_ckpt_gib", unet_train(arch, ckpt=True), spec.unet_train_ckpt_gib)]
        rows.append(("vae decode elements / px", vae_decode_elems_per_px(arch), diffusion.VAE_DECODE_ELEMS_PER_PX))
        for name, traced, constant in rows:
            print(f"{arch + ' ' + name:34} {traced:9.4g} {constant:9.4g}")


if __name__ == "__main__":
    main()

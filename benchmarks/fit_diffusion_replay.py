"""What PyTorch's caching allocator reserves over a whole Stable Diffusion call: a replay, beside the planner.

    python benchmarks/fit_diffusion_replay.py [--arch sd15 sdxl] [--steps 3] [--batch 1]

onecard/fit/diffusion.py puts a pipeline call's reserved memory at its allocated peak plus ALLOC_SLACK of the
heaviest phase's working memory. This script asks what the allocator really keeps: it builds the pipeline's models
from their config.json values (no weights: meta device, then FakeTensors; no GPU), places their weights in the
order `from_pretrained(...).to("cuda")` does (text encoders, UNet, VAE, safety checker for SD 1.5), then runs one
call as diffusers' StableDiffusion(XL)Pipeline does in fp16 with SDPA: the prompt and the empty negative prompt
encoded, `steps` UNet calls at batch 2 x batch (classifier-free guidance), each followed by the guidance arithmetic
and a scheduler-sized update of the latents, the VAE decode (SDXL: the VAE upcast to fp32 first, its config's
force_upcast) and, for SD 1.5, the safety checker's CLIP vision tower on 224 px crops. Every tensor storage's
allocation and free is logged in order (onecard.fit.trace's `_Events`) and replayed through the allocator's rules
(`trace.replay_caching_allocator`: block sizes, 2/20 MiB segments, best fit, splitting, no merging across
segments), which gives the call's peak allocated and peak reserved bytes, and again under ever smaller capacities
(the allocator gives back its wholly free segments before it fails), which gives the least it needs. What a card
with room keeps above that is cache: onecard/fit/diffusion.py's VAE_DECODE_CACHE_ELEMS_PER_PX (`Estimate.cache_gib`)
is its median per output pixel of the decode.

What the replay does not see: cuDNN's and cuBLAS's workspaces (fake tensors run no kernel), and what a CUDA kernel
allocates beyond the operator's outputs. The scheduler's own update is modelled as two latent-sized tensors (its
real arithmetic runs on host tensors that FakeTensorMode will not mix). Needs torch, diffusers and transformers
(`pip install 'onecard[diffuse]'`).
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from fit_diffusion_trace import TEXT_DIM, TEXT_TOKENS, _unet

from onecard.core.extras import require
from onecard.fit import diffusion, plan
from onecard.fit.estimate import GIB
from onecard.fit.job import FitJob
from onecard.fit.trace import ReplayOutOfMemory, _dispatch_mode, _Events, _fake_params, replay_caching_allocator

MIB = 2**20


def _models(arch: str) -> dict[str, Any]:
    """The pipeline's models on the meta device, fp16; a VAE the pipeline upcasts at decode (SDXL) in fp32."""
    torch = require("torch", "fit")
    diffusers = require("diffusers", "diffuse")
    transformers = require("transformers", "diffuse")
    with torch.device("meta"):
        models: dict[str, Any] = {}
        for i, cfg in enumerate(diffusion.TEXT_CONFIGS[arch]):
            cls = transformers.CLIPTextModel if i == 0 else transformers.CLIPTextModelWithProjection
            models[f"text_encoder{i + 1}"] = cls(transformers.CLIPTextConfig(**cfg)).to(torch.float16).eval()
        models["unet"] = _unet(arch, torch.float16).eval()
        vae_dtype = torch.float32 if diffusion.CATALOG[arch].vae_force_upcast else torch.float16
        models["vae"] = diffusers.AutoencoderKL(**diffusion.VAE_CONFIG).to(vae_dtype).eval()
        if diffusion.CATALOG[arch].safety_checker:
            vision = transformers.CLIPVisionConfig(**diffusion.SAFETY_CHECKER_VISION)
            models["safety_checker"] = torch.nn.ModuleDict({
                "vision_model": transformers.CLIPVisionModel(vision),
                "visual_projection": torch.nn.Linear(vision.hidden_size, 768, bias=False),
            }).to(torch.float16).eval()
    return models


def least_capacity(events: list[tuple[bool, int, int]], low: int, high: int) -> int:
    """The least reservable bytes (to 2 MiB) under which the log replays without running out: the allocator gives
    back its wholly free cached segments and retries before it fails (`replay_caching_allocator(capacity=...)`)."""
    while high - low > 2 * MIB:
        mid = (low + high) // 2
        try:
            replay_caching_allocator(events, mid)
            high = mid
        except ReplayOutOfMemory:
            low = mid
    return high


def replay(arch: str, steps: int, batch: int) -> tuple[float, float, float, float]:
    """(weights, peak allocated, peak reserved, least capacity) in GiB of one pipeline call, replayed."""
    torch = require("torch", "fit")
    from torch._subclasses.fake_tensor import FakeTensorMode

    spec = diffusion.CATALOG[arch]
    fake_mode = FakeTensorMode()
    models = _models(arch)
    counter = _Events()
    vae16: list[Any] = []  # an upcast VAE sits on the GPU in fp16 until the decode
    for name, model in models.items():  # from_pretrained(...).to("cuda"): each model's weights, in pipeline order
        _fake_params(model, fake_mode)
        for t in [*model.parameters(), *model.buffers()]:
            if name == "vae" and spec.vae_force_upcast:
                with fake_mode:
                    vae16.append(torch.empty(t.shape, dtype=torch.float16))
                counter.add(vae16[-1], "weights")
            else:
                counter.add(t, "weights")
    weights = sum(counter.live.values())
    side = spec.native_px // 8
    n = 2 * batch  # classifier-free guidance: the negative and the positive prompt in one UNet batch

    def call() -> None:
        ids = torch.zeros(n, TEXT_TOKENS, dtype=torch.long)
        states, pooled = [], None
        for i in range(len(diffusion.TEXT_CONFIGS[arch])):
            out = models[f"text_encoder{i + 1}"](ids, output_hidden_states=True)
            states.append(out.hidden_states[-2] if arch == "sdxl" else out.last_hidden_state)
            pooled = getattr(out, "text_embeds", None)
            del out
        text = torch.cat(states, dim=-1) if len(states) > 1 else states[0]
        del states
        assert text.shape[-1] == TEXT_DIM[arch]
        added = None
        if arch == "sdxl":
            added = {"text_embeds": pooled, "time_ids": torch.zeros(n, 6, dtype=torch.float16)}
        latents = torch.randn(batch, 4, side, side, dtype=torch.float16)
        for step in range(steps):
            model_input = torch.cat([latents] * 2)
            noise = models["unet"](model_input, torch.tensor([999 - step] * n), encoder_hidden_states=text,
                                   added_cond_kwargs=added).sample
            uncond, cond = noise.chunk(2)
            noise = uncond + 7.5 * (cond - uncond)
            update = noise * 0.1  # the scheduler's step: a latent-sized intermediate and the new latents
            latents = latents - update
            del model_input, uncond, cond, noise, update
        vae = models["vae"]
        if spec.vae_force_upcast:  # upcast_vae(): the fp32 weights replace the fp16 ones
            for t in [*vae.parameters(), *vae.buffers()]:
                counter.add(t, "weights")
            vae16.clear()
            latents = latents.float()
        image = vae.decode(latents / 0.18215).sample
        image = (image / 2 + 0.5).clamp(0, 1)
        if "safety_checker" in models:
            crops = torch.zeros(batch, 3, 224, 224, dtype=torch.float16)
            checker = models["safety_checker"]
            checker["visual_projection"](checker["vision_model"](crops).pooler_output)
        image.cpu()

    with fake_mode, _dispatch_mode(counter), torch.inference_mode():
        call()
    allocated, reserved = replay_caching_allocator(counter.events)
    least = least_capacity(counter.events, allocated, reserved + 2 * MIB)
    return weights / GIB, allocated / GIB, reserved / GIB, least / GIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["sd15", "sdxl"], choices=sorted(diffusion.CATALOG))
    parser.add_argument("--steps", type=int, default=3, help="UNet calls replayed (the reserved peak is reached by "
                        "the second: every call has the same shapes)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    print("GiB; least capacity: the least the allocator needs to finish (it gives back free segments first); cache: "
          "reserved - least capacity, what a card with room keeps; per px: its elements per output pixel of the "
          "decode\n")
    print(f"{'job':14} {'weights':>7} {'allocated':>9} {'reserved':>8} {'least cap.':>10} {'cache':>6} "
          f"{'per px':>6} | {'planner alloc':>13} {'reserved':>8} {'cache':>6}")
    per_px = []
    for arch in args.arch:
        vae_b = 4 if diffusion.CATALOG[arch].vae_force_upcast else 2
        px = diffusion.CATALOG[arch].native_px
        for batch in args.batch:
            weights, allocated, reserved, least = replay(arch, args.steps, batch)
            per_px.append((reserved - least) * GIB / (px * px * batch * vae_b))
            job = FitJob(model=arch, job="infer", batch=batch, calibration=False)
            est = plan.resolve_arch(job.model).estimate(job, None)
            print(f"{arch + ' batch ' + str(batch):14} {weights:7.2f} {allocated:9.2f} {reserved:8.2f} {least:10.2f} "
                  f"{reserved - least:6.2f} {per_px[-1]:6.0f} | {est.peak_allocated_gib:13.2f} "
                  f"{est.peak_reserved_gib:8.2f} {est.cache_gib:6.2f}")
    print(f"\ncache per output pixel of the VAE decode: median {statistics.median(per_px):.0f} elements "
          f"(onecard/fit/diffusion.py VAE_DECODE_CACHE_ELEMS_PER_PX = {diffusion.VAE_DECODE_CACHE_ELEMS_PER_PX})")


if __name__ == "__main__":
    main()

"""`onecard diffuse train` against a plain loop written as diffusers' `train_text_to_image_lora.py` /
`train_dreambooth_lora.py` examples do it, on the tiny random-weight pipeline (`onecard.diffuse.tiny`), CPU, fp32.

    python benchmarks/diffuse.py [--steps 40] [--rounds 4] [--rank 4] [--resolution 64] [--batch-size 4]

Both sides: the same pipeline folder, the same 8 images with captions, a peft `LoraConfig(r, lora_alpha=r,
init_lora_weights="gaussian", target_modules=["to_k", "to_q", "to_v", "to_out.0"])` on the UNet, DDPM
`add_noise` at random timesteps, MSE against the noise, AdamW at the same learning rate, batch, resolution, steps.
The plain side does what the examples' loop does every step: the frozen VAE encodes the batch (`latent_dist.sample()`)
and the frozen text encoder its captions, the gradient is clipped to norm 1 (`--max_grad_norm` 1.0), AdamW with the
scripts' betas/eps/weight decay; without `accelerate` (one CPU process: it adds nothing there). onecard caches the
latents and caption embeddings once before the loop.

Each side runs in its own subprocess (peak RSS: `getrusage(RUSAGE_SELF).ru_maxrss` and VmHWM of the child); a warm-up
round of both is discarded, then the sides alternate for `--rounds` rounds (the first side switches each round).
Step time: the median of each run's steps after the first 3; the table gives the medians over rounds and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
SKIP = 3  # steps left out of the step-time median (allocator and kernel warm-up)


def make_images(folder: Path, n: int = 8) -> Path:
    """Colour fields with a noisy square and a caption each: something for the LoRA to fit."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        a = np.zeros((64, 64, 3), np.uint8)
        a[:, :, i % 3] = 200
        a[16:48, 16:48] = rng.integers(0, 255, (32, 32, 3))
        Image.fromarray(a).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text("a photo of a square")
    return folder


def peak_rss_mib() -> tuple[float, float | None]:
    """This process's peak RSS from getrusage (KiB on Linux) and /proc's VmHWM, in MiB."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    hwm = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    except OSError:
        pass
    return ru, hwm


def _vmrss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------------------------------------- the two sides


def run_onecard(args: argparse.Namespace) -> dict[str, Any]:
    """`onecard diffuse train` through its entry point (what the CLI calls), per-step times read off `Run.log`."""
    from onecard.core import records
    from onecard.diffuse.config import DiffuseConfig
    from onecard.diffuse.run import train

    steps: list[dict[str, float]] = []
    original = records.Run.log

    def log(self: Any, metrics: Any, step: int | None = None) -> None:
        steps.append(dict(metrics))
        original(self, metrics, step)

    records.Run.log = log  # type: ignore[method-assign]
    config = DiffuseConfig(base=args.base, data=args.data, token="sks", rank=args.rank, resolution=args.resolution,
                           max_steps=args.steps, batch_size=args.batch_size, lr=args.lr, dtype="fp32",
                           device="cpu", seed=0)
    with tempfile.TemporaryDirectory() as runs:
        train(config, runs_root=runs, report_to=())
    return {"losses": [s["loss"] for s in steps], "step_s": [s["s_per_step"] for s in steps]}


def run_plain(args: argparse.Namespace) -> dict[str, Any]:
    """The examples' training loop, step for step, without accelerate (fp32, one CPU process)."""
    import random

    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig
    from transformers import CLIPTextModel, CLIPTokenizer

    from onecard.diffuse.data import load_images  # the same resize + center crop + [-1, 1] as the examples' transforms

    torch.manual_seed(0)
    base = args.base
    noise_scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler")
    tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder")
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    unet.requires_grad_(False)
    vae.requires_grad_(False)
    text_encoder.requires_grad_(False)
    unet_lora_config = LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                  target_modules=LORA_TARGETS)
    unet.add_adapter(unet_lora_config)
    cast_training_params(unet, dtype=torch.float32)
    lora_layers = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(lora_layers, lr=args.lr, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-08)

    pixels, captions = load_images(args.data, args.resolution, "sks")
    input_ids = tokenizer(captions, max_length=tokenizer.model_max_length, padding="max_length", truncation=True,
                          return_tensors="pt").input_ids
    order = random.Random(0)
    losses, step_s = [], []
    unet.train()
    for _ in range(args.steps):
        t0 = time.perf_counter()
        pick = order.sample(range(len(pixels)), min(args.batch_size, len(pixels)))
        latents = vae.encode(pixels[pick]).latent_dist.sample() * vae.config.scaling_factor
        noise = torch.randn_like(latents)
        bsz = latents.shape[0]
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (bsz,), device=latents.device)
        timesteps = timesteps.long()
        noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps)
        encoder_hidden_states = text_encoder(input_ids[pick], return_dict=False)[0]
        target = noise  # epsilon prediction, as the tiny pipeline's scheduler is
        model_pred = unet(noisy_latents, timesteps, encoder_hidden_states, return_dict=False)[0]
        loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lora_layers, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        step_s.append(time.perf_counter() - t0)
    return {"losses": losses, "step_s": step_s}


def child(args: argparse.Namespace) -> None:
    import diffusers  # noqa: F401  (both sides' imports first: their resident size is the floor under the peak)
    import peft  # noqa: F401
    import torch
    import transformers  # noqa: F401

    if args.side == "onecard":
        import onecard.diffuse.run  # noqa: F401

    torch.set_num_threads(args.threads)
    imports_mib = _vmrss_mib()
    started = time.perf_counter()
    out = (run_onecard if args.side == "onecard" else run_plain)(args)
    out["wall_s"] = time.perf_counter() - started
    out["rss_mib"], out["hwm_mib"] = peak_rss_mib()
    out["imports_mib"] = imports_mib
    print("RESULT " + json.dumps(out))


# ---------------------------------------------------------------------------------------------- the driver


def spawn(side: str, args: argparse.Namespace, steps: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", side, "--base", args.base, "--data", args.data,
           "--steps", str(steps), "--rank", str(args.rank), "--resolution", str(args.resolution),
           "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--threads", str(args.threads)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        sys.exit(f"{side} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(line[7:])
    result["median_step_s"] = statistics.median(result["step_s"][SKIP:] or result["step_s"])
    return result


def quarter_means(losses: list[float]) -> tuple[float, float]:
    w = max(1, len(losses) // 4)
    return sum(losses[:w]) / w, sum(losses[-w:]) / w


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", choices=["onecard", "plain"])
    p.add_argument("--base", help="pipeline folder (default: a tiny one built in a temporary folder)")
    p.add_argument("--data", help="image folder with captions (default: 8 built ones)")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if args.child:
        args.side = args.child
        child(args)
        return

    import diffusers
    import peft
    import torch

    from onecard.diffuse.tiny import make_tiny_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        args.base = args.base or str(make_tiny_pipeline(Path(tmp) / "tiny-sd", seed=0))
        args.data = args.data or str(make_images(Path(tmp) / "images"))
        print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
              f"diffusers {diffusers.__version__}, peft {peft.__version__}; tiny SD pipeline, rank {args.rank}, "
              f"{args.resolution} px, batch {args.batch_size}, {args.steps} steps, lr {args.lr}, fp32, "
              f"{args.threads} threads")
        for side in ("onecard", "plain"):  # warm-up: disk cache, imports; discarded
            spawn(side, args, steps=SKIP + 2)
        results: dict[str, list[dict[str, Any]]] = {"onecard": [], "plain": []}
        for r in range(args.rounds):
            sides = ("onecard", "plain") if r % 2 == 0 else ("plain", "onecard")
            for side in sides:
                res = spawn(side, args, args.steps)
                results[side].append(res)
                first, last = quarter_means(res["losses"])
                print(f"round {r + 1} {side:8s}: {res['median_step_s']:.3f} s/step, peak RSS {res['rss_mib']:.0f} "
                      f"MiB (VmHWM {res['hwm_mib']:.0f}, after imports {res['imports_mib']:.0f}), "
                      f"wall {res['wall_s']:.1f} s, loss quarter means "
                      f"{first:.4f} -> {last:.4f}", flush=True)

    def med(side: str, key: str) -> float:
        return statistics.median(x[key] for x in results[side])

    print(f"\n| tiny SD, medians of {args.rounds} rounds | onecard diffuse train | plain (diffusers' example loop) | "
          "onecard / plain |\n|---|---|---|---|")
    for key, label in (("median_step_s", "s per step"), ("rss_mib", "peak RSS, getrusage (MiB)"),
                       ("hwm_mib", "peak RSS, VmHWM (MiB)"),
                       ("imports_mib", "RSS after the imports, before any model (MiB)"),
                       ("wall_s", "process time in the side's code (s)")):
        a, b = med("onecard", key), med("plain", key)
        print(f"| {label} | {a:.3f} | {b:.3f} | **{a / b:.2f}** |")
    for side in ("onecard", "plain"):
        pairs = [quarter_means(x["losses"]) for x in results[side]]
        falls = all(last < first for first, last in pairs)
        shown = ", ".join(f"{f:.4f} -> {ll:.4f}" for f, ll in pairs)
        print(f"{side}: loss (first -> last quarter mean) {shown}: {'falls' if falls else 'DOES NOT FALL'} "
              "in every round")


if __name__ == "__main__":
    main()

"""Validation grids: a few prompts drawn with fixed seeds while the LoRA trains, one grid PNG per checkpoint.

Rows are prompts (the trigger prompt, the class prompt: does it learn the subject, does the class stay the class),
columns seeds; the same seeds at every checkpoint, so the grids compare step against step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["draw_grid", "grid", "VALIDATION_STEPS"]

VALIDATION_STEPS = 20  # denoising steps per validation image


def grid(images: list[list[Any]]) -> Any:
    """One PIL image of rows x columns of equal-sized PIL images."""
    from PIL import Image

    w, h = images[0][0].size
    out = Image.new("RGB", (w * max(len(r) for r in images), h * len(images)), "white")
    for y, row in enumerate(images):
        for x, image in enumerate(row):
            out.paste(image, (x * w, y * h))
    return out


def draw_grid(pipe: Any, prompts: list[str], seeds: list[int], resolution: int, path: Path,
              autocast_dtype: Any = None) -> Path:
    """Draw each prompt at each seed with `pipe` (its UNet with the LoRA as it is now) and save the grid at `path`."""
    import contextlib

    import torch

    device = pipe.device.type
    amp = torch.autocast(device, dtype=autocast_dtype) if autocast_dtype is not None else contextlib.nullcontext()
    was_training = pipe.unet.training
    pipe.unet.eval()
    rows = []
    with torch.no_grad(), amp:
        for prompt in prompts:
            generators = [torch.Generator(pipe.device).manual_seed(s) for s in seeds]
            rows.append(pipe([prompt] * len(seeds), num_inference_steps=VALIDATION_STEPS, height=resolution,
                             width=resolution, generator=generators).images)
    pipe.unet.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid(rows).save(path)
    return path

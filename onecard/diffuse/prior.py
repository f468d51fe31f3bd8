"""Prior preservation (DreamBooth, Ruiz et al. 2022, arXiv:2208.12242): images of the class drawn by the base model.

Training on them at `prior_weight` beside the subject keeps the class prompt ("a photo of a dog") drawing the class,
not the subject (diffusers' train_dreambooth_lora.py --with_prior_preservation). They are generated once, by the base
pipeline before the LoRA trains, and cached: a folder per base + prompt + resolution + seed, image i drawn with seed
seed + i, so a later run that asks for more reuses the ones already there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["class_cache_dir", "class_images", "CLASS_STEPS"]

CLASS_STEPS = 30  # denoising steps per class image (diffusers' dreambooth scripts use the pipeline's default, 50)


def class_cache_dir(root: Path, base: str, prompt: str, resolution: int, seed: int) -> Path:
    """The cache folder of one class-image set: a hash of what draws them."""
    key = json.dumps([str(Path(base).expanduser().resolve()) if Path(base).expanduser().exists() else base, prompt,
                      resolution, seed])
    return root / hashlib.sha256(key.encode()).hexdigest()[:16]


def class_images(pipe: Any, folder: Path, prompt: str, count: int, resolution: int, seed: int,
                 on_image: Any = None) -> torch.Tensor:
    """`count` class images as (count, 3, resolution, resolution) in [-1, 1]: those in `folder`, the missing ones
    drawn with `pipe` now (seed + i each) and written there (PNG, atomically), with a `prompt.txt` beside them."""
    import numpy as np
    import torch
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prompt.txt").write_text(prompt, encoding="utf-8")
    pixels = []
    for i in range(count):
        path = folder / f"{i:04d}.png"
        if not path.is_file():
            generator = torch.Generator(pipe.device).manual_seed(seed + i)
            image = pipe(prompt, num_inference_steps=CLASS_STEPS, height=resolution, width=resolution,
                         generator=generator).images[0]
            image.save(path.with_name(path.stem + ".tmp.png"))
            path.with_name(path.stem + ".tmp.png").replace(path)
            if on_image is not None:
                on_image(i)
        with Image.open(path) as im:
            rgb = im.convert("RGB").resize((resolution, resolution), Image.Resampling.BICUBIC)
        pixels.append(torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1))
    return torch.stack(pixels)

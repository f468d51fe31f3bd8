"""Generation with LoRAs: parse `PATH[:WEIGHT]`, load each LoRA into a pipeline as its own adapter at its weight,
draw a batch with one recorded seed per image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onecard.core.errors import ConfigError, ModelNotFoundError

__all__ = ["parse_lora", "load_loras", "generate"]


def parse_lora(spec: str) -> tuple[Path, float]:
    """`a.safetensors:0.8` -> (a.safetensors, 0.8); without a weight, 1.0. The path must exist."""
    path, _, weight = spec.rpartition(":")
    try:
        path, scale = (path, float(weight)) if path else (spec, 1.0)
    except ValueError:  # a colon that is part of the path (C:\\...)
        path, scale = spec, 1.0
    if not Path(path).expanduser().exists():
        raise ModelNotFoundError(f"LoRA {path} does not exist", "give a .safetensors file or a run's lora/ folder, "
                                 "optionally with :WEIGHT (e.g. style.safetensors:0.8)")
    return Path(path).expanduser(), scale


def load_loras(pipe: Any, loras: list[tuple[Path, float]]) -> list[dict[str, Any]]:
    """Load each LoRA as adapter `lora{i}` and set their weights together; returns what was loaded (for the record)."""
    if not loras:
        return []
    names = []
    for i, (path, _) in enumerate(loras):
        name = f"lora{i}"
        try:
            if path.is_file():
                pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
            else:
                pipe.load_lora_weights(str(path), adapter_name=name)
        except (ValueError, OSError, KeyError) as e:
            raise ConfigError(f"LoRA {path} does not load into this pipeline: {e}",
                              "check that it was trained for this base model (SD 1.5 and SDXL LoRAs differ)") from e
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[w for _, w in loras])
    return [{"path": str(p), "weight": w, "adapter": n} for (p, w), n in zip(loras, names, strict=True)]


def generate(pipe: Any, prompt: str, *, negative_prompt: str | None, steps: int, guidance: float,
             resolution: int | None, seeds: list[int]) -> list[Any]:
    """One PIL image per seed (each image its own generator, so image k is the same whatever the batch size)."""
    import torch

    side = resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
    generators = [torch.Generator(pipe.device).manual_seed(s) for s in seeds]
    out = pipe([prompt] * len(seeds), negative_prompt=[negative_prompt] * len(seeds) if negative_prompt else None,
               num_inference_steps=steps, guidance_scale=guidance, height=side, width=side, generator=generators)
    return list(out.images)

"""The LoRA in the kohya layout that AUTOMATIC1111/Forge, ComfyUI and kohya's scripts load.

Keys are the UNet's module paths with `_` for `.` under `lora_unet_`, `lora_down`/`lora_up` for peft's
`lora_A`/`lora_B`, and one `.alpha` per module (the UIs scale by alpha / rank); diffusers' own converter
(`convert_state_dict_to_kohya`) does the renaming, but it stores alpha = rank whatever the LoRA was trained with, so
the alpha is set here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from onecard.core.extras import require

if TYPE_CHECKING:
    import torch

__all__ = ["to_kohya", "kohya_metadata", "save_safetensors"]


def to_kohya(peft_state: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """A UNet's peft LoRA state dict (`get_peft_model_state_dict(unet)`) in the kohya layout, with `alpha`."""
    import torch

    diffusers = require("diffusers", "diffuse")
    kohya: dict[str, torch.Tensor] = diffusers.utils.convert_state_dict_to_kohya(
        {f"unet.{k}": v for k, v in peft_state.items()})
    for key in kohya:
        if key.endswith(".alpha"):
            kohya[key] = torch.tensor(float(alpha))
    return kohya


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str]) -> Path:
    """Write `tensors` to `path` (contiguous, on the CPU) so that a crash mid-write leaves the old file whole."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def kohya_metadata(rank: int, alpha: float, base: str) -> dict[str, str]:
    """The training facts kohya's scripts write (`ss_*`), which the UIs show."""
    return {"ss_network_module": "networks.lora", "ss_network_dim": str(rank), "ss_network_alpha": str(alpha),
            "ss_sd_model_name": Path(base).name, "format": "pt"}

"""What a `diffuse train` run leaves in its folder, and finding such a run again (sample, export, eval, --resume)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from onecard.core.records import Run, write_json_atomic

__all__ = ["LORA_DIR", "STATE_FILE", "TRAINING_STATE", "VALIDATION_DIR", "find_train_run", "save_checkpoint"]

LORA_DIR = "lora"  # the run's LoRA folder: pytorch_lora_weights.safetensors, what `load_lora_weights(dir)` reads
STATE_FILE = "state.json"  # beside it: the step the LoRA was saved at
TRAINING_STATE = "training_state.pt"  # and what `--resume` continues from: LoRA, optimizer, RNGs, losses
VALIDATION_DIR = "validation"  # the validation grids, step-000100.png ...


def find_train_run(ref: str, runs_root: str | None, need: str) -> dict[str, Any]:
    """The record of a diffuse train run (id, unique prefix, folder or 'last') that has the file `need`."""
    from onecard.core.runs import find_run

    return find_run(ref, runs_root, capability="diffuse", has=need,
                    how_to_make="train one: `onecard diffuse train --base sd15 --data IMAGES_DIR`")


def save_checkpoint(unet: Any, lora_config: Any, run: Run, losses: list[float], optimizer: Any, generator: Any,
                    order: random.Random) -> None:
    """The LoRA for diffusers, and what `--resume` needs; each file replaced whole (Ctrl-C cannot leave half of one)."""
    import torch
    from peft.utils import get_peft_model_state_dict

    from onecard.diffuse.train import save_lora

    folder = Path(run.dir) / LORA_DIR
    save_lora(unet, lora_config, folder)
    state = {"lora": get_peft_model_state_dict(unet), "optimizer": optimizer.state_dict(),
             "generator": generator.get_state(), "order": order.getstate(), "losses": losses}
    torch.save(state, folder / f"{TRAINING_STATE}.tmp")
    os.replace(folder / f"{TRAINING_STATE}.tmp", folder / TRAINING_STATE)
    write_json_atomic(folder / STATE_FILE, {"step": len(losses)})

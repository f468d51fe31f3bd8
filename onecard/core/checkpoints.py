"""Checkpoints a resume can trust, for `tune train` and `vlm tune`: each is written under a temporary name and renamed
once whole, and a resume takes the newest one that holds what the trainer loads back.

A kill (or Ctrl-C, or an out-of-memory error) in the middle of a save leaves `tmp-checkpoint-N/`, never a
`checkpoint-N/` without its trainer state; the next save removes it. Folders cut short by an older writer are skipped
by `latest_checkpoint`, each with what it lacks. `onecard.core` imports without torch: `AtomicSFTTrainer` subclasses
TRL's SFTTrainer, so it is built on first use (the module's `__getattr__`), one class for every caller.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

__all__ = ["AtomicSFTTrainer", "latest_checkpoint", "missing", "CHECKPOINT_PREFIX", "STAGING_PREFIX",  # noqa: F822 (AtomicSFTTrainer: the module __getattr__)
           "WEIGHTS"]

CHECKPOINT_PREFIX = "checkpoint"  # transformers' PREFIX_CHECKPOINT_DIR: the trainer saves `checkpoint-<step>/`
STAGING_PREFIX = "tmp-"
# what the transformers Trainer writes for a model (full or adapter), one of them per checkpoint
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors", "model.safetensors.index.json",
           "pytorch_model.bin", "pytorch_model.bin.index.json")

_built: dict[str, type] = {}


def missing(checkpoint: Path) -> list[str]:
    """What a resume loads that `checkpoint` lacks (empty: it is complete)."""
    names = {p.name for p in checkpoint.iterdir()}
    needs: dict[str, tuple[str, ...]] = {"trainer_state.json": ("trainer_state.json",)}
    if not any(n.startswith("global_step") for n in names):  # DeepSpeed keeps weights and optimizer in global_stepN/
        needs |= {"the weights (adapter_model.safetensors)": WEIGHTS, "optimizer.pt": ("optimizer.pt",),
                  "scheduler.pt": ("scheduler.pt",)}
    lacks = [what for what, files in needs.items() if not names.intersection(files)]
    if "trainer_state.json" in names:
        try:
            json.loads((checkpoint / "trainer_state.json").read_bytes())
        except ValueError:  # cut short while written (a JSON or UTF-8 error)
            lacks.append("a whole trainer_state.json")
    return lacks


def latest_checkpoint(folder: Path) -> tuple[Path | None, list[dict[str, str]]]:
    """The newest complete `checkpoint-N` in `folder` (None: there is none), and the newer ones skipped, each with
    what it lacks. `tmp-checkpoint-N` folders (a staged save cut short) are never taken."""
    found = [p for p in folder.glob(f"{CHECKPOINT_PREFIX}-*")
             if p.is_dir() and p.name.removeprefix(f"{CHECKPOINT_PREFIX}-").isdigit()]
    skipped: list[dict[str, str]] = []
    for checkpoint in sorted(found, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        lacks = missing(checkpoint)
        if not lacks:
            return checkpoint, skipped
        skipped.append({"checkpoint": checkpoint.name, "missing": ", ".join(lacks)})
    return None, skipped


def _atomic_trainer() -> type:
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints
    from trl.trainer.sft_trainer import SFTTrainer

    class AtomicSFTTrainer(SFTTrainer):
        """TRL's SFTTrainer whose checkpoints appear whole or not at all.

        transformers (5.x) writes `checkpoint-N/` in place, file by file, with `trainer_state.json` last. Here the
        trainer writes into `tmp-checkpoint-N/checkpoint-N/`, and the folder is renamed to `checkpoint-N/` (one
        rename, atomic on one filesystem) once every process has written its part.
        """

        _staging: Path | None = None

        def _get_output_dir(self, trial: Any) -> str:
            return str(self._staging) if self._staging is not None else str(super()._get_output_dir(trial))

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            out = Path(self._get_output_dir(trial))
            name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            if self.args.should_save:
                for left in out.glob(f"{STAGING_PREFIX}{PREFIX_CHECKPOINT_DIR}-*"):  # from a save that was cut short
                    shutil.rmtree(left)
            self.accelerator.wait_for_everyone()
            self._staging = out / f"{STAGING_PREFIX}{name}"
            try:
                super()._save_checkpoint(model, trial)  # type: ignore[no-untyped-call]
            finally:
                self._staging = None
            self.accelerator.wait_for_everyone()
            if self.args.should_save:
                staged, final = out / f"{STAGING_PREFIX}{name}", out / name
                if final.exists():  # saved again at the same step: the new one replaces it
                    shutil.rmtree(final)
                (staged / name).rename(final)
                staged.rmdir()
                # the trainer rotated the staging folder; keep `save_total_limit` in the real one, as it would
                rotate_checkpoints(output_dir=str(out), save_total_limit=self.args.save_total_limit,
                                   best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
            self.accelerator.wait_for_everyone()

    return AtomicSFTTrainer


def __getattr__(name: str) -> Any:
    if name != "AtomicSFTTrainer":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _built:
        _built[name] = _atomic_trainer()
    return _built[name]

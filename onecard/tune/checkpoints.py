"""Checkpoints a resume can trust: each is written under a temporary name and renamed once whole, and a resume takes
the newest one that holds what the trainer loads back.

A kill (or Ctrl-C, or an out-of-memory error) in the middle of a save leaves `tmp-checkpoint-N/`, never a
`checkpoint-N/` without its trainer state; the next save removes it. Folders cut short by an older writer are
skipped by `latest_checkpoint` (`onecard.core.trainer`, the finder `vlm tune` uses too), each with what it lacks.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints
from trl.trainer.sft_trainer import SFTTrainer

from onecard.core.trainer import latest_checkpoint, missing

__all__ = ["AtomicSFTTrainer", "latest_checkpoint", "missing", "STAGING_PREFIX"]

STAGING_PREFIX = "tmp-"


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

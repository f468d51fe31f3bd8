"""Two real tinylm runs, tiny and fast, for the Runs API and page tests (they differ in learning rate)."""

from __future__ import annotations

from pathlib import Path

import pytest

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 40


def make_tinylm_runs(home: Path) -> list[str]:
    """Train two tinylm runs into `home`'s runs directory; their ids, oldest first."""
    pytest.importorskip("torch")
    from onecard.tinylm import run
    from onecard.tinylm.config import TinyLMConfig

    text = home / "text.txt"
    text.parent.mkdir(parents=True, exist_ok=True)
    text.write_text(TEXT)
    ids = []
    for lr in (3e-3, 1e-2):
        config = TinyLMConfig(data=str(text), preset="tiny", max_iters=24, eval_interval=8, log_interval=4,
                              eval_windows=8, warmup_iters=4, learning_rate=lr, device="cpu")
        ids.append(run.train(config, runs_root=str(home / "runs"), report_to=()).id)
    return ids

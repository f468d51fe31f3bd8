"""The base model of a LoRA: `--base sd15|sdxl|PATH|hub-id|file.safetensors` to local files, never downloading.

A name from fit's diffusion catalog (sd15, sdxl, their aliases) stands for its hub id; a hub id loads from the local
Hugging Face cache; a folder is a diffusers pipeline (model_index.json); a single `.safetensors`/`.ckpt` file is an
original-layout checkpoint (A1111/ComfyUI's), loaded with diffusers' `from_single_file`, which reads the base's
configs from the cache. The family (SD 1.5 or SDXL) is what fit plans the memory with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from onecard.core.errors import ModelNotFoundError
from onecard.core.sources import hub_cache_dir, hub_snapshot
from onecard.fit import diffusion

__all__ = ["Base", "resolve_base", "looks_like_base", "hub_id"]

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
_SDXL_KEY = "conditioner.embedders.1."  # the second text encoder of an original-layout SDXL checkpoint


@dataclass(frozen=True)
class Base:
    """Where a base model's files are, how they load, and its family (what fit plans it as)."""

    ref: str
    path: Path
    kind: Literal["folder", "single-file"]
    family: Literal["sd15", "sdxl"]
    hub_id: str | None = None  # the hub id it came from, or whose configs a single file loads with


def hub_id(family: str) -> str:
    """The hub id of a catalog family: the last alias with an org (the current repo; runwayml's was taken down)."""
    return next(a for a in reversed(diffusion.CATALOG[family].aliases) if "/" in a)


def resolve_base(ref: str) -> Base:
    """Resolve `ref` (see the module docstring); a missing model is a ModelNotFoundError that says how to get it."""
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelNotFoundError(
                f"{path} is not a diffusers pipeline folder (no model_index.json)",
                "pass the folder of a pipeline saved by diffusers (unet/, vae/, text_encoder/, tokenizer/, scheduler/)")
        return Base(ref, path, "folder", _folder_family(path))
    if path.is_file() and path.suffix.lower() in SINGLE_FILE_SUFFIXES:
        family = _file_family(path)
        return Base(ref, path, "single-file", family, hub_id(family))
    if path.suffix.lower() in SINGLE_FILE_SUFFIXES or ref.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"{path} does not exist", "pass an existing pipeline folder or checkpoint file")
    arch = diffusion.find(ref)
    repo = hub_id(arch.key) if arch else ref
    if repo.count("/") != 1:
        names = ", ".join(diffusion.CATALOG)
        raise ModelNotFoundError(f"base {ref!r} is not a folder, a checkpoint file, a hub id or a known name",
                                 f"pass a diffusers pipeline folder, a .safetensors checkpoint, a hub id, or {names}")
    snapshot = hub_snapshot(repo)
    if snapshot is None or not (snapshot / "model_index.json").is_file():
        raise ModelNotFoundError(
            f"base {repo} is not in the local Hugging Face cache ({hub_cache_dir()}) and onecard does not download",
            f"download it once (online) with `huggingface-cli download {repo}`, or pass a local folder or file")
    return Base(ref, snapshot, "folder", _folder_family(snapshot), repo)


def looks_like_base(ref: str) -> bool:
    """Whether `ref` names a base model rather than a run: a pipeline folder, a checkpoint file, a catalog name or
    a hub id (org/name) that is no local path."""
    path = Path(ref).expanduser()
    return ((path / "model_index.json").is_file() or (path.is_file() and path.suffix.lower() in SINGLE_FILE_SUFFIXES)
            or diffusion.find(ref) is not None or (ref.count("/") == 1 and not path.exists()
                                                   and not ref.startswith((".", "/", "~"))))


def _folder_family(folder: Path) -> Literal["sd15", "sdxl"]:
    index = json.loads((folder / "model_index.json").read_text())
    return "sdxl" if "text_encoder_2" in index or "XL" in index.get("_class_name", "") else "sd15"


def _file_family(path: Path) -> Literal["sd15", "sdxl"]:
    if path.suffix.lower() != ".safetensors":
        return "sd15"  # a pickled .ckpt is not opened here; SDXL ships as .safetensors
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return "sdxl" if any(k.startswith(_SDXL_KEY) for k in f.keys()) else "sd15"  # noqa: SIM118

"""Content fingerprints of input files and folders, so a run record says exactly which data it saw."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

__all__ = ["sha256_file", "fingerprint"]

_CHUNK = 1 << 20
# Folders that hold tool state, not data.
_SKIP_DIRS = {".git", "__pycache__", ".ipynb_checkpoints", ".venv", "node_modules"}


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(path: str | Path) -> dict[str, Any]:
    """sha256 over a file, or over a folder's relative paths and file contents (sorted, so order-independent).

    Returns {"path", "kind", "sha256", "files", "bytes"}; a missing path gives {"path", "kind": "missing"}.
    """
    p = Path(path).expanduser().resolve()
    if p.is_file():
        return {"path": str(p), "kind": "file", "sha256": sha256_file(p), "files": 1, "bytes": p.stat().st_size}
    if not p.is_dir():
        return {"path": str(p), "kind": "missing"}
    h = hashlib.sha256()
    files = 0
    size = 0
    for root, dirs, names in os.walk(p):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(names):
            f = Path(root) / name
            if not f.is_file():
                continue
            rel = f.relative_to(p).as_posix()
            h.update(rel.encode() + b"\0" + sha256_file(f).encode() + b"\n")
            files += 1
            size += f.stat().st_size
    return {"path": str(p), "kind": "folder", "sha256": h.hexdigest(), "files": files, "bytes": size}

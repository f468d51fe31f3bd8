"""What a run record stores about where it ran: versions, git state, hardware. Fast: no heavy imports."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import onecard

__all__ = ["versions", "git_state", "hardware"]

# The libraries whose versions decide a result, by distribution name.
KEY_LIBRARIES = (
    "torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "datasets", "safetensors", "tokenizers",
    "sentence-transformers", "faiss-cpu", "faiss-gpu", "bm25s", "llama_cpp_python", "ultralytics", "onnxruntime",
    "onnxruntime-gpu", "diffusers", "faster-whisper", "ctranslate2", "numpy", "pydantic", "trackio",
)


def versions() -> dict[str, Any]:
    """Python, onecard and installed key library versions; torch's CUDA build if torch is already imported."""
    libs = {}
    for name in KEY_LIBRARIES:
        try:
            libs[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    out: dict[str, Any] = {"python": platform.python_version(), "onecard": onecard.__version__, "libraries": libs}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            out["cudnn"] = torch.backends.cudnn.version()
    return out


def git_state(cwd: str | Path | None = None) -> dict[str, Any] | None:
    """The commit and dirtiness of the git repository around `cwd`, or None outside one (or without git)."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        root = git("rev-parse", "--show-toplevel")
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"root": root, "commit": commit, "dirty": dirty}


def hardware() -> dict[str, Any]:
    """Host, OS, CPU, RAM and GPUs (name, memory, driver, compute capability)."""
    import psutil

    from onecard.core.device import gpus

    found, _ = gpus()
    return {
        "host": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "gpus": [
            {k: g[k] for k in ("name", "vram_total_gib", "compute_capability", "driver", "cuda_runtime")} for g in found
        ],
    }

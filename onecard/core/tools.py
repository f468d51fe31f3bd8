"""Finding llama.cpp's own tools (convert_hf_to_gguf.py, llama-quantize...), which the exports of `tune` and `vlm` run.

Looked for in the folder the user names (--llama-cpp), else $LLAMA_CPP_DIR, in the checkout's root and its build
folders, then on PATH.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["llama_cpp_tool"]


def llama_cpp_tool(name: str, folder: str | None = None) -> Path | None:
    """The path of llama.cpp's tool `name`, or None when neither `folder`, $LLAMA_CPP_DIR nor PATH has it."""
    root = folder or os.environ.get("LLAMA_CPP_DIR")
    if root:
        for candidate in (Path(root) / name, Path(root) / "build" / "bin" / name, Path(root) / "bin" / name):
            if candidate.is_file():
                return candidate
    found = shutil.which(name)
    return Path(found) if found else None

"""Section 1 of a recipe: the install commands for a path on an OS, and the notes on torch, CUDA and the OS."""

from __future__ import annotations

__all__ = ["install_commands", "torch_note", "OSES"]

OSES = ("linux", "windows", "macos")
# The CUDA build of torch on Windows comes from PyTorch's own index; pick the CUDA version the driver supports there.
TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu128"


def install_commands(extra: str, os: str) -> list[str]:
    """The pip commands, in order: the CUDA build of torch first where PyPI's is CPU-only, then onecard's extra."""
    if os == "windows":  # cmd.exe and PowerShell both take double quotes
        return [f"pip install torch torchvision --index-url {TORCH_CUDA_INDEX}", f'pip install "onecard[{extra}]"']
    return [f"pip install 'onecard[{extra}]'"]


def torch_note(os: str) -> str:
    """What the OS's torch wheel is, and what it means for the GPU."""
    return {
        "linux": "PyPI's torch wheel for Linux is the CUDA build and brings its own CUDA runtime; the NVIDIA driver "
                 "only has to be new enough for it (`nvidia-smi` shows the newest CUDA the driver runs).",
        "windows": "PyPI's torch wheel for Windows is CPU-only, so the CUDA build comes first, from PyTorch's index "
                   "(the cu128 above needs a driver that runs CUDA 12.8; https://pytorch.org/get-started/locally/ "
                   "lists the others).",
        "macos": "No CUDA on macOS: torch runs on the Apple GPU (MPS) and the CPU, llama.cpp on Metal. bitsandbytes "
                 "(4-bit), flash-attn, xformers and TensorRT do not install, and the card figures in this recipe "
                 "are for an NVIDIA card.",
    }[os]

"""onecard: real AI projects on one consumer GPU.

`import onecard` stays light: heavy libraries are imported inside the functions that use them.
"""

import os

__version__ = "0.1.0"

__all__ = ["__version__"]

# Load CUDA kernels on first use, as PyTorch does when it initialises CUDA (pytorch/pytorch#86509: 274 MiB of context
# lazily against 636 MiB with every kernel of its library loaded). llama.cpp and CTranslate2 never set it, and a CUDA
# runtime before 12.2 loads every kernel of every library at start unless told otherwise (CUDA C++ Programming
# Guide, "Lazy Loading": opt-in from 11.7, the default on Linux from 12.2): a prebuilt cu121 llama-cpp-python wheel
# would spend hundreds of MiB of a 12 GB card on kernels it never runs. A user's own setting stands.
os.environ.setdefault("CUDA_MODULE_LOADING", "LAZY")

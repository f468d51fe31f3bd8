"""What a GPU process holds besides its tensors: the CUDA context, the caching allocator's slack, and the
allocator's segment sizes.

Every estimator adds the first two on top of the tensors it counts (`Estimate.context_gib`, `Estimate.slack_gib`),
and the allocator's rules are read by the replay (`trace.replay_caching_allocator`) and the estimators that count
its segments, so they are defined once, here.
"""

from __future__ import annotations

import dataclasses
import math

from onecard.fit.estimate import Estimate
from onecard.fit.job import FitJob

__all__ = ["CUDA_CONTEXT_GIB", "EAGER_MODULES_GIB", "ALLOC_SLACK", "context_note", "lazy_note", "slack_note",
           "eager_modules", "SMALL_SIZE", "MIN_LARGE_ALLOC", "ROUND_LARGE", "round_large", "segment_bytes"]

# CUDA context + cuBLAS/cuDNN handles of one process (PyTorch, llama.cpp, CTranslate2): 0.3-0.7 GiB by driver, GPU
# and CUDA version; with lazy module loading (kernels load on first use: PyTorch sets it since 1.13, CUDA's default
# on Linux since 12.2, and onecard sets CUDA_MODULE_LOADING=LAZY for its own processes, onecard/__init__.py) it sits
# near 0.45. nvidia-smi counts it, torch.cuda.memory_* does not. (The LLM estimators used 0.5 without a reason of
# their own; their scored cases are allocated figures, which the context does not enter.)
CUDA_CONTEXT_GIB = 0.45
# A process that loads every kernel when its context is made (FitJob.cuda_module_loading "eager") holds more. When:
# a CUDA runtime before 11.7 (no lazy loading), or a driver before 12.2 (lazy not yet its default) initialised before
# PyTorch's first CUDA operation: PyTorch sets CUDA_MODULE_LOADING=LAZY only there (aten/src/ATen/cuda/detail/
# CUDAHooks.cpp initCUDA, maybe_set_cuda_module_loading), while torch.cuda.is_available() calls cudaGetDeviceCount,
# which runs cuInit (torch/cuda/__init__.py; docs notes/cuda.rst), and the mode is the driver's from cuInit on. (A 2025
# run that calls is_available() first on a torch built for CUDA 12.1 reads a lazy context, heldout7's GTX 1650 Ti:
# from the 12.2 driver on, lazy is the default whatever the runtime.) How much: PyTorch's own kernels, measured when
# the default was set, 666,632,192 B of device memory in use eagerly against 287,047,680 B lazily after one small
# tensor op (pytorch/pytorch#86509, 2022;
# "before CUDA 11.7 all kernels were loaded ... which took >1000MB", ptrblck in pytorch/pytorch#107667, 2023: later
# builds with more kernels hold more, so this is a floor). Counted for PyTorch processes only: no public figure
# gives llama.cpp's or CTranslate2's eager cost (four public llama.cpp readings on CUDA 12.1 sit 0.9-1.1 GiB above
# the lazy estimate), and vLLM sizes its KV pool to gpu_memory_utilization of the card whatever the context holds.
EAGER_MODULES_GIB = (666_632_192 - 287_047_680) / 2**30
# PyTorch caching allocator: memory reserved above what is allocated, as a share of the transient tensors (the
# activations, logits and working buffers that are freed and reallocated within a step; weights and optimizer
# states are allocated once and packed).
ALLOC_SLACK = 0.10
# PyTorch's CUDA caching allocator (c10/cuda/CUDACachingAllocator.cpp, torch 2.2-2.13, default settings): requests
# round up to 512 B; up to 1 MiB (kSmallSize) they come from 2 MiB segments (kSmallBuffer), up to 10 MiB
# (kMinLargeAlloc) from 20 MiB ones (kLargeBuffer), larger ones get a segment of their own rounded up to 2 MiB
# (kRoundLarge)
_MIB = 1 << 20
SMALL_SIZE, MIN_LARGE_ALLOC, ROUND_LARGE = _MIB, 10 * _MIB, 2 * _MIB


def round_large(size: float) -> int:
    """A size rounded up to the allocator's 2 MiB step (kRoundLarge)."""
    return ROUND_LARGE * math.ceil(size / ROUND_LARGE)


def segment_bytes(size: int) -> int:
    """The segment the caching allocator reserves for a request of `size` bytes that no cached block holds."""
    if size <= SMALL_SIZE:
        return 2 * _MIB
    if size < MIN_LARGE_ALLOC:
        return 20 * _MIB
    return round_large(size)


def context_note() -> str:
    return (f"CUDA context {CUDA_CONTEXT_GIB} GiB (varies 0.3-0.7 by driver and GPU; nvidia-smi shows it, "
            "torch does not)")


def slack_note() -> str:
    return f"PyTorch allocator slack (reserved - allocated) {ALLOC_SLACK:.0%} of the transient tensors"


def lazy_note(runtime: str) -> str:
    return (f"the CUDA context assumes kernels load on first use (CUDA_MODULE_LOADING=LAZY: onecard sets it, and CUDA "
            f"12.2+ defaults to it); {runtime} on an older CUDA runtime without it loads every kernel at start and "
            "holds several hundred MiB more")


def eager_modules(est: Estimate, job: FitJob, runtime: str) -> Estimate:
    """`est` with the context a process that loads every kernel eagerly holds (`EAGER_MODULES_GIB`), where the job says
    so and the runtime is a PyTorch process; a note otherwise. `runtime`: the runtime that holds the model."""
    if job.cuda_module_loading == "lazy":
        return est
    added = 0.0
    if runtime in ("llama.cpp", "ollama", "faster-whisper"):
        note = (f"eager module loading: not counted for {runtime} (no public figure for its kernels; PyTorch's "
                f"own are {EAGER_MODULES_GIB * 1024:.0f} MiB)")
    elif runtime == "vllm":
        note = ("eager module loading: vLLM sizes its KV pool to gpu_memory_utilization of the card, so a larger "
                "context shrinks the pool, not the process")
    else:
        added = EAGER_MODULES_GIB
        note = (f"eager module loading: the CUDA context holds every kernel of the loaded CUDA libraries, "
                f"+{EAGER_MODULES_GIB * 1024:.0f} MiB for PyTorch's own (pytorch/pytorch#86509; a floor: later builds "
                "hold more)")
    return dataclasses.replace(est, context_gib=est.context_gib + added, assumptions=[*est.assumptions, note])

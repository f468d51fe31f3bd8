"""What a GPU process holds besides its tensors: the CUDA context and the caching allocator's slack.

Every estimator adds these on top of the tensors it counts (`Estimate.context_gib`, `Estimate.slack_gib`), so they
are defined once, here.
"""

from __future__ import annotations

__all__ = ["CUDA_CONTEXT_GIB", "ALLOC_SLACK", "context_note", "slack_note"]

# CUDA context + cuBLAS/cuDNN handles of one process (PyTorch, llama.cpp, CTranslate2): 0.3-0.7 GiB by driver, GPU
# and CUDA version; with lazy module loading (CUDA >= 11.7, the default under PyTorch since 1.13) kernels load on first
# use and it sits near 0.45. nvidia-smi counts it, torch.cuda.memory_* does not. (The LLM estimators used 0.5 without
# a reason of their own; their scored cases are allocated figures, which the context does not enter.)
CUDA_CONTEXT_GIB = 0.45
# PyTorch caching allocator: memory reserved above what is allocated, as a share of the transient tensors (the
# activations, logits and working buffers that are freed and reallocated within a step; weights and optimizer
# states are allocated once and packed).
ALLOC_SLACK = 0.10


def context_note() -> str:
    return (f"CUDA context {CUDA_CONTEXT_GIB} GiB (varies 0.3-0.7 by driver and GPU; nvidia-smi shows it, "
            "torch does not)")


def slack_note() -> str:
    return f"PyTorch allocator slack (reserved - allocated) {ALLOC_SLACK:.0%} of the transient tensors"

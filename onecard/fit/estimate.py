"""What the planner answers: a peak split into parts, with the assumptions behind it."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Estimate", "PARTS", "GIB", "gib"]

GIB = 1024**3


def gib(nbytes: float) -> float:
    return nbytes / GIB

# Tensor parts that add up to the allocated peak, in the order they are drawn.
PARTS = (
    "weights",
    "kv_cache",
    "activations",
    "logits",
    "gradients",
    "optimizer",
    "adapters",
    "runtime",  # buffers the runtime allocates besides the above: llama.cpp compute buffer, cuBLAS workspace
)


@dataclass
class Estimate:
    """A predicted peak. `parts` (GiB) sum to the peak allocated by tensors; slack and context come on top.

    peak_allocated_gib: torch.cuda.max_memory_allocated()
    peak_reserved_gib:  torch.cuda.max_memory_reserved()  (allocated + allocator slack)
    process_gib:        what nvidia-smi shows for the process (reserved + CUDA context): what has to fit
    cache_gib:          freed segments PyTorch's caching allocator keeps besides, where the card has room (a later
                        phase's larger tensors fit in none of them: the VAE decode after the UNet loop, YOLO's
                        validation pass). It gives them back and retries when a cudaMalloc fails, so they are not
                        part of what has to fit; max_memory_reserved and nvidia-smi count them on a card with room
                        (`held_gib`).
    """

    parts: dict[str, float]
    slack_gib: float
    context_gib: float
    assumptions: list[str] = field(default_factory=list)
    cpu_gib: float = 0.0  # offloaded to host RAM
    gpu_layers: int | None = None  # llama.cpp: layers on the GPU
    step_s: float | None = None  # training step (one micro-batch) time
    tokens_per_s: float | None = None  # decode throughput (LLM inference)
    throughput_note: str | None = None  # the assumption behind step_s / tokens_per_s
    cache_gib: float = 0.0  # freed segments kept on a card with room, given back when memory runs short

    def __post_init__(self) -> None:
        unknown = set(self.parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown estimate parts {sorted(unknown)}; valid: {PARTS}")

    @property
    def peak_allocated_gib(self) -> float:
        return sum(self.parts.values())

    @property
    def peak_reserved_gib(self) -> float:
        return self.peak_allocated_gib + self.slack_gib

    @property
    def process_gib(self) -> float:
        return self.peak_reserved_gib + self.context_gib

    def held_gib(self, usable_gib: float | None) -> float:
        """The cache a card that lets a process have `usable_gib` keeps at the peak: all of `cache_gib` where it has
        room, what is left above what has to fit otherwise (None: a card with room)."""
        if usable_gib is None:
            return self.cache_gib
        return max(0.0, min(self.cache_gib, usable_gib - self.process_gib))

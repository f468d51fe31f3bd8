"""Why reserved memory outgrows the peak a job needs when sequence lengths vary: a replay of a LoRA run's large
allocations through the caching allocator's rules (`onecard.fit.trace.replay_caching_allocator`).

    python benchmarks/fit_variable_length_replay.py [--steps 400]

The run is ms-swift's Yi-6B LoRA of heldout5 (benchmarks/fit_cases/public/heldout5/llm_train_ms_swift_yi6b.yaml,
development data since its scoring): batch 1, one sample per step, lengths drawn from a gamma with the data set's
3234 +- 2547 tokens and samples longer than max_length deleted (swift's truncation_strategy 'delete'), gradient
checkpointing, transformers < 4.37's loss (bf16 logits, `.float()`, the shifted contiguous copy, log-softmax, their
gradients), each layer's recompute and backward. Weights, adapters and optimizer states are left out (allocated once,
packed). Printed: the transients' peak allocated and peak reserved per max_length. A sequence longer than every one
before it cannot use the cached blocks the shorter ones left, so it reserves new segments; the old ones stay cached
(free, whole, released only when a cudaMalloc fails), which max_memory_reserved on an 80 GB card counts.

Then the same runs under a cap (`replay_caching_allocator(capacity=...)`: on a segment that would pass it the
allocator gives back its wholly free segments and tries again): the smallest cap, in 0.25 GiB steps above the
transients' allocated peak, under which each run completes, i.e. what a card must leave the transients.
"""

from __future__ import annotations

import argparse
import random

from onecard.fit.trace import ReplayOutOfMemory, replay_caching_allocator

H, V, LAYERS, FFN = 4096, 64000, 32, 11008  # Yi-6B (benchmarks/fit_cases/public/heldout5/configs/llm_train_yi-6b)
MEAN, SD, SHORTEST = 3234.4, 2547.5, 91  # cls-fudan-news-zh token counts, from ms-swift's benchmark page


def lengths(max_length: int, steps: int, seed: int = 0) -> list[int]:
    rnd = random.Random(seed)
    shape, scale = (MEAN / SD) ** 2, SD**2 / MEAN
    out: list[int] = []
    while len(out) < steps:
        t = int(rnd.gammavariate(shape, scale))
        if SHORTEST <= t <= max_length:
            out.append(t)
    return out


def events(seq_lengths: list[int]) -> list[tuple[bool, int, int]]:
    """Allocation log of the steps' large tensors, in the order autograd makes and frees them."""
    log: list[tuple[bool, int, int]] = []
    key = 0

    def alloc(nbytes: int) -> int:
        nonlocal key
        log.append((True, key, nbytes))
        key += 1
        return key - 1

    def free(k: int) -> None:
        log.append((False, k, 0))

    for t in seq_lengths:
        inputs = [alloc(t * H * 2) for _ in range(LAYERS)]  # checkpointed block inputs
        final = alloc(t * H * 2)
        l16 = alloc(t * V * 2)
        l32 = alloc(t * V * 4)  # logits.float()
        free(l16)
        shifted = alloc(t * V * 4)  # shift_logits.contiguous()
        logsm = alloc(t * V * 4)
        free(l32)
        g1 = alloc(t * V * 4)
        free(logsm)
        g2 = alloc(t * V * 4)
        free(g1)
        free(shifted)
        g3 = alloc(t * V * 2)
        free(g2)
        gh = alloc(t * H * 2)
        free(g3)
        free(final)
        for layer in reversed(range(LAYERS)):  # recompute one block, its backward, then its input goes
            tmp = [alloc(t * H * 2) for _ in range(6)] + [alloc(t * FFN * 2) for _ in range(3)]
            for k in tmp:
                free(k)
            free(inputs[layer])
        free(gh)
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    print(f"{'max_length':>10} {'longest':>8} {'allocated GiB':>14} {'reserved GiB':>13} {'reserved - allocated':>21}")
    for max_length in (512, 1024, 2048, 4096, 8192):
        seqs = lengths(max_length, args.steps)
        allocated, reserved = replay_caching_allocator(events(seqs))
        print(f"{max_length:10d} {max(seqs):8d} {allocated / 2**30:14.2f} {reserved / 2**30:13.2f} "
              f"{(reserved - allocated) / 2**30:21.2f}")
    fixed = [max_length for max_length in (8192,) for _ in range(args.steps)]
    allocated, reserved = replay_caching_allocator(events(fixed))
    print(f"every step at 8192 tokens: allocated {allocated / 2**30:.2f} GiB, reserved {reserved / 2**30:.2f} GiB")
    print(f"\n{'max_length':>10} {'allocated GiB':>14} {'smallest cap that completes, GiB':>33}")
    for max_length in (512, 1024, 2048, 4096, 8192):
        log = events(lengths(max_length, args.steps))
        allocated, _ = replay_caching_allocator(log)
        cap = allocated
        while True:
            try:
                replay_caching_allocator(log, capacity=int(cap))
                break
            except ReplayOutOfMemory:
                cap += 2**28
        print(f"{max_length:10d} {allocated / 2**30:14.2f} {cap / 2**30:33.2f}")


if __name__ == "__main__":
    main()

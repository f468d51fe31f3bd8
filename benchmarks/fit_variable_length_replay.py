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

    python benchmarks/fit_variable_length_replay.py --traced

The same question on every allocation of a real model's steps instead of the large tensors written out above: a
Llama-3.1-8B LoRA (r 16 on every linear, bf16 weights, batch 1, gradient checkpointing, transformers' own loss: the
plain transformers stack) traced on fake tensors (`onecard.fit.trace.training_log`: its weights, adapters, every
activation, gradient and AdamW state, in the order transformers, peft and torch make and free them), at max_length
2048 and 8192, its 12 rows' lengths drawn from a gamma of mean 0.4 x max_length and cut at it (truncated, as
`onecard tune` does), in three orders: every step at max_length (3 steps), the draws as drawn then one at
max_length (four draws, seeds 0-3), and seed 0's draws shortest first then one at max_length (each step longer than
the last: the most segments left cached). Printed per run: the allocated and reserved peaks, the smallest cap (64
MiB steps) under which the run completes less its allocated peak (what the card must hold above the tensors), and
the planner's slack for the same job (`onecard.fit.plan`: what it adds above the allocated peak for the allocator).
About 35 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import random

from onecard.fit.job import FitJob
from onecard.fit.plan import plan
from onecard.fit.trace import ReplayOutOfMemory, replay_caching_allocator, training_log

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


def smallest_cap(log: list[tuple[bool, int, int]], allocated: int, step: int) -> int:
    """The smallest capacity, `step` bytes at a time up from the allocated peak, under which the log replays."""
    cap = allocated
    while True:
        try:
            replay_caching_allocator(log, capacity=cap)
            return cap
        except ReplayOutOfMemory:
            cap += step


def traced(seeds: int) -> None:
    print(f"{'max_length':>10} {'order':>22} {'steps':>5} {'allocated GiB':>14} {'reserved GiB':>13} "
          f"{'cap - allocated GiB':>20} {'planner slack GiB':>18}")
    for max_length in (2048, 8192):
        job = FitJob(model="llama-3.1-8b", job="train", method="lora", quant="bf16", batch=1, seq=max_length,
                     lora_rank=16, lora_targets="all-linear", grad_ckpt=True, optimizer="adamw", gpu="a100-80gb")
        draws = {}
        for seed in range(seeds):
            rnd = random.Random(seed)
            draws[seed] = [max(16, min(max_length, int(rnd.gammavariate(2.0, max_length / 5)))) for _ in range(12)]
        slack = plan(job).estimate.slack_gib
        orders = {"one length": [max_length] * 3, "shortest first (seed 0)": sorted(draws[0]) + [max_length]}
        orders |= {f"as drawn (seed {seed})": drawn + [max_length] for seed, drawn in draws.items()}
        for order, seqs in orders.items():
            log = training_log(job, seqs)
            allocated, reserved = replay_caching_allocator(log)
            cap = smallest_cap(log, allocated, 2**26)
            print(f"{max_length:10d} {order:>22} {len(seqs):5d} {allocated / 2**30:14.2f} {reserved / 2**30:13.2f} "
                  f"{(cap - allocated) / 2**30:20.2f} {slack:18.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--traced", action="store_true", help="the traced Llama-3.1-8B LoRA runs instead")
    parser.add_argument("--seeds", type=int, default=4, help="--traced: draws of row lengths run as drawn")
    args = parser.parse_args()
    if args.traced:
        traced(args.seeds)
        return
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
        cap = smallest_cap(log, allocated, 2**28)
        print(f"{max_length:10d} {allocated / 2**30:14.2f} {cap / 2**30:33.2f}")


if __name__ == "__main__":
    main()

"""What a KV cache grown by torch.cat leaves in PyTorch's caching allocator: `llm_infer.stranded` beside replays.

    python benchmarks/fit_kv_stranding_replay.py

transformers' generate makes every layer's K and V anew at each decode step, one token longer (the tuple cache before
4.42, `DynamicCache.update`'s torch.cat since). The tensors' allocations and frees are written out step by step, in
the order each cache makes them, and replayed through the caching allocator's rules
(`onecard.fit.trace.replay_caching_allocator`, PyTorch's CUDACachingAllocator on a card with room: nothing is given
back). Printed per batch, for Vicuna-7B's shapes (Llama-2-7B: 32 layers, 32 KV heads of 128, fp16) at a 128-token
prompt and 256 new tokens, optimum-benchmark's heldout3 runs: the GiB reserved above the allocated peak

  dynamic   DynamicCache: each layer's new K (then V) allocated, the old one freed at once; today's prefill (SDPA's
            fused kernel, the last position's logits);
  tuple     the tuple cache: a step allocates every layer's new K and V while the old tuple lives, frees it after;
            4.35's prefill (eager attention's scores, the fp32 logits of every prompt position), whose freed
            segments later cache requests can be cut from;
  tuple+fw  the same after two prefill-sized forward passes (optimum-benchmark's warm-ups);
  gqa       Mistral-7B's shapes (8 KV heads: each decode step copies K and V to the 32 query heads, `repeat_kv`, and
            frees the copies within the layer) with the tuple cache, 512-token prompt, 1000 new tokens;
  bnb4      tuple+fw with bitsandbytes 4-bit linears at more than one token per call (0.41's MatMul4Bit: each weight
            dequantized to fp16 for the matmul and freed after it, q k v o then gate up down, every layer, prefill
            and every decode step at batch > 1);
  awq       tuple+fw with AutoAWQ 0.1.6's GEMM linears (transformers 4.35's unfused integration: each call's
            split-k output, 8 x tokens x out features in fp16, summed and freed);

beside the planner's closed form (`llm_infer.stranded`: one segment per 2 MiB of growth above 10 MiB, per K and V
tensor), which the planner counts as cache for the tuple cache only. The measured figures it stands for:
optimum-benchmark's Vicuna-7B generate (transformers 4.35), NVML used less the forward pass's, 28.8 GiB at batch 16
and 7.2 GiB at batch 8 (the KV cache's 3 and 1.5 GiB among them; heldout3's source, experiments/A100-80GB, commit
09886e96). The events are the large tensors only, written from the model code's order (not traced), so a replay
stands for the mechanism's size, not the figure. The same runs' quantized rows sit above the planned tensors (no
trail: the planner takes both as soaking it) by 7.6 GiB at batch 16 for bitsandbytes FP4 and 18.1 for AWQ, and by
1.2 and 1.55 GiB at batch 4 (each less the 0.85-1.1 GiB every quantized row of that harness holds outside the
allocator, RESULTS).
"""

from __future__ import annotations

import itertools

from onecard.fit.llm_infer import stranded
from onecard.fit.trace import replay_caching_allocator

GIB = 2**30
L, HEADS, HEAD, HIDDEN, FFN, VOCAB = 32, 32, 128, 4096, 11008, 32000  # Vicuna-7B (Llama-2-7B)
PROMPT, NEW = 128, 256


SPLIT_K = 8  # AutoAWQ 0.1.6 WQLinear_GEMM: gemm_forward_cuda(..., 8)


def events(batch: int, cache: str, warmups: int = 0, kv_heads: int = HEADS, prompt: int = PROMPT, new: int = NEW,
           ffn: int = FFN, quant: str = "fp16") -> list[tuple[bool, int, int]]:
    """The large allocations of `warmups` forward passes and one generate call, in order. `cache`: tuple (with
    transformers 4.35's prefill: eager attention's scores, the fp32 logits of every prompt position) or dynamic (with
    today's: SDPA's fused kernel, the last position's logits only). `quant`: fp16, bnb4 or awq (each linear's
    transient buffers, see the module docstring)."""
    legacy = cache == "tuple"
    log: list[tuple[bool, int, int]] = []
    keys = itertools.count()

    def alloc(nbytes: int) -> int:
        key = next(keys)
        log.append((True, key, nbytes))
        return key

    def free(*keys_: int) -> None:
        log.extend((False, k, 0) for k in keys_)

    def kv(tokens: int) -> int:
        return batch * kv_heads * tokens * HEAD * 2

    def linears(tokens: int) -> None:  # q k v o, gate up down: (in, out) features
        for d_in, d_out in [(HIDDEN, HIDDEN)] * 4 + [(HIDDEN, ffn)] * 2 + [(ffn, HIDDEN)]:
            if quant == "bnb4" and tokens > 1:
                free(alloc(d_in * d_out * 2), alloc(tokens * d_out * 2))
            elif quant == "awq":
                free(alloc(SPLIT_K * tokens * d_out * 2), alloc(tokens * d_out * 2))

    def forward(tokens: int, keep: bool) -> list[list[int]]:
        layers = []
        for _ in range(L):  # per layer: q, k, v, the scores (fp16 and the fp32 softmax), the MLP's three tensors
            q = alloc(batch * tokens * HIDDEN * 2)
            k, v = alloc(kv(tokens)), alloc(kv(tokens))
            if legacy:
                scores, soft = alloc(batch * HEADS * tokens * tokens * 2), alloc(batch * HEADS * tokens * tokens * 4)
                free(soft, scores)
            free(q)
            linears(batch * tokens)
            mlp = [alloc(batch * tokens * ffn * 2) for _ in range(3)]
            free(*mlp)
            if keep:
                layers.append([k, v])
            else:
                free(k, v)
        positions = tokens if legacy else 1
        half, full = alloc(batch * positions * VOCAB * 2), alloc(batch * positions * VOCAB * 4)  # logits.float()
        free(half, full)
        return layers

    for _ in range(warmups):
        forward(prompt, keep=False)
    layers = forward(prompt, keep=True)
    for t in range(prompt + 1, prompt + new):
        grown = []
        for old in layers:
            k, v = alloc(kv(t)), alloc(kv(t))
            copies = [alloc(batch * HEADS * t * HEAD * 2) for _ in range(2)] if kv_heads < HEADS else []  # repeat_kv
            free(*copies)
            linears(batch)
            if cache == "dynamic":
                free(*old)
            grown.append([k, v])
        if cache == "tuple":  # generate drops the old tuple once the step's forward returns
            free(*(key for old in layers for key in old))
        layers = grown
    free(*(key for layer in layers for key in layer))
    return log


def above_allocated(log: list[tuple[bool, int, int]]) -> float:
    allocated, reserved = replay_caching_allocator(log)
    return (reserved - allocated) / GIB


def main() -> None:
    print("GiB reserved above the allocated peak")
    print(f"{'batch':>5} {'dynamic':>8} {'tuple':>8} {'tuple+fw':>9} {'bnb4':>8} {'awq':>8} {'closed form':>12}")
    for batch in (1, 4, 8, 16):
        per_token = batch * HEADS * HEAD * 2  # one layer's K (or V) per token
        replayed = [above_allocated(events(batch, cache, warmups, quant=quant)) for cache, warmups, quant in
                    (("dynamic", 0, "fp16"), ("tuple", 0, "fp16"), ("tuple", 2, "fp16"), ("tuple", 2, "bnb4"),
                     ("tuple", 2, "awq"))]
        print(f"{batch:5d} {replayed[0]:8.2f} {replayed[1]:8.2f} {replayed[2]:9.2f} {replayed[3]:8.2f}"
              f" {replayed[4]:8.2f} {stranded(per_token, PROMPT, NEW, L) / GIB:12.2f}", flush=True)
    mistral = events(16, "tuple", kv_heads=8, prompt=512, new=1000, ffn=14336)
    print(f"\ngqa (Mistral-7B shapes, batch 16, tuple cache with repeat_kv copies): {above_allocated(mistral):.2f} GiB "
          "above allocated; the planner counts none for grouped-KV models")


if __name__ == "__main__":
    main()

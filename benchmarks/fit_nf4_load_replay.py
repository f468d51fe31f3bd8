"""What torchtune's QLoRA leaves reserved after it loads the model when torchao converts each weight to NF4 whole.

    python benchmarks/fit_nf4_load_replay.py --torchtune DIR --torchao DIR [--deps DIR]

torchao before 0.2 turns a bf16 weight into NF4 in one piece (dtypes/nf4tensor.py quantize_tensor_nearest: the
(N, 16) distance of every element to the 16 NF4 values, its abs, the argmin's int64 indices; 0.2.0 converts in
chunks of 1,048,576 elements). torchtune 0.1's single-device QLoRA recipe builds the model on the GPU (each
LoRALinear converts its initial weight) and then loads the checkpoint, converting every base weight again
(utils/_register_nf4_dispatch_ops.py: the NF4 copy_ is `to_nf4(incoming.to(device))`), and never empties the cache.
This script does the same on the meta device under onecard.fit.trace's allocation log: it builds torchtune 0.1's
lora_llama2 (all attention projections and the MLP with LoRA, NF4 base, bf16) for each shape, converts every base
weight from a bf16 tensor as the load does, and replays the log through the caching allocator's rules
(`trace.replay_caching_allocator`). It prints what stays allocated, the reserved peak, and the cache (reserved less
allocated) as a multiple of the largest base weight's bf16 bytes: onecard.fit.llm_train.NF4_LOAD_CACHE_PER_WEIGHT_BYTE.

DIR: an unpacked wheel (`pip download torchtune==0.1.0 torchao==0.1 --no-deps`, unzip); `--deps` holds what
torchtune 0.1 imports that this environment lacks (omegaconf, sentencepiece, tiktoken, blobfile; a pkg_resources
that re-exports packaging).

2026-12-07, torch 2.13 CPU, torchtune 0.1.0, torchao 0.1: Llama-2-7B allocated after the load 3.89 GiB, reserved
peak 8.17 GiB, cache 4.28 GiB = 50.9 x the 84 MiB of a 4096 x 11008 bf16 weight (torchtune's tutorial at 0914d5cf:
"Peak memory reserved, model init 9.13 GB" = 8.50 GiB); the other shapes below.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

GIB = 2**30
SHAPES = {  # torchtune 0.1 lora_llama2 arguments: Llama-2-7B, Llama-2-13B, a Llama-3-8B-shaped model
    "llama-2-7b": dict(vocab_size=32_000, num_layers=32, num_heads=32, num_kv_heads=32, embed_dim=4096,
                       intermediate_dim=11008),
    "llama-2-13b": dict(vocab_size=32_000, num_layers=40, num_heads=40, num_kv_heads=40, embed_dim=5120,
                        intermediate_dim=13824),
    "llama-3-8b": dict(vocab_size=128_256, num_layers=32, num_heads=32, num_kv_heads=8, embed_dim=4096,
                       intermediate_dim=14336),
}


def replay(name: str, dims: dict[str, int]) -> tuple[float, float, float, float]:
    """(allocated after the load, peak allocated, peak reserved, largest base weight's bf16 bytes), in bytes."""
    import torch
    from torchao.dtypes.nf4tensor import to_nf4
    from torchtune.models.llama2._component_builders import lora_llama2

    from onecard.fit.trace import _dispatch_mode, _Events, replay_caching_allocator

    class Log(_Events):
        def add(self, t: Any, part: str | None = None) -> None:
            if type(t).__name__ != "NF4Tensor":  # a wrapper: its bytes are its inner tensors', logged as made
                super().add(t, part)

    log = Log()
    largest = 0
    with _dispatch_mode(log):
        with torch.device("meta"):
            torch.set_default_dtype(torch.bfloat16)
            model = lora_llama2(["q_proj", "k_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True,
                                max_seq_len=4096, lora_rank=8, lora_alpha=16, quantize_base=True, **dims)
        for _, weight in list(model.named_parameters()):
            if "NF4Tensor" not in type(weight).__name__:
                continue
            incoming = torch.empty(weight.shape, dtype=torch.bfloat16, device="meta")  # the checkpoint's, on the GPU
            ref = to_nf4(incoming)
            for attr in ("quantized_scalers", "quantization_factor", "scaler_mean", "quantized_data", "nf4"):
                setattr(weight, attr, getattr(ref, attr))
            largest = max(largest, incoming.numel() * 2)
            del ref, incoming
    live = sum(log.live.values())
    peak_allocated, peak_reserved = replay_caching_allocator(log.events)
    del model
    return live, peak_allocated, peak_reserved, largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--torchtune", required=True, help="unpacked torchtune 0.1.0 wheel")
    parser.add_argument("--torchao", required=True, help="unpacked torchao 0.1 wheel")
    parser.add_argument("--deps", help="a folder with torchtune 0.1's other imports")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = parser.parse_args()
    sys.path[:0] = [args.torchao, args.torchtune]
    if args.deps:
        sys.path.append(args.deps)
    print(f"{'model':12} {'allocated':>10} {'peak alloc':>10} {'reserved':>9} {'cache':>7} {'x largest weight':>17}")
    for name in args.shapes:
        live, peak_allocated, reserved, largest = replay(name, SHAPES[name])
        cache = reserved - live
        print(f"{name:12} {live / GIB:10.2f} {peak_allocated / GIB:10.2f} {reserved / GIB:9.2f} "
              f"{cache / GIB:7.2f} {cache / largest:17.1f}", flush=True)


if __name__ == "__main__":
    main()

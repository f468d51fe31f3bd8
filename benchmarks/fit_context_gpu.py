"""How much device memory the CUDA context of a PyTorch process holds, lazy and eager (a device check; not run yet).

    python benchmarks/fit_context_gpu.py

onecard.fit.overheads counts a lazy context as 0.45 GiB and an eager one (FitJob.cuda_module_loading) as PyTorch's
measured 362 MiB more (pytorch/pytorch#86509, torch 1.13). This prints, for the torch installed here, the context of a
fresh process after a few common kernels ran (a matmul, a convolution, SDPA), in three ways:
  lazy                CUDA_MODULE_LOADING=LAZY
  eager               CUDA_MODULE_LOADING=EAGER
  is_available first  the variable unset and torch.cuda.is_available() called before the first CUDA operation (torch
                      sets LAZY only in its lazy init; is_available() runs cuInit before it: eager on a CUDA runtime
                      before 12.2, lazy where the runtime or driver defaults to lazy)
Each child reads total - free device memory (cudaMemGetInfo) less what torch's allocator reserved, and nvidia-smi's
used memory before it started is taken off: the context and library workspaces outside the allocator.
"""

from __future__ import annotations

import os
import subprocess
import sys

CHILD = """
import torch
if {probe}:
    torch.cuda.is_available()
a = torch.randn(256, 256, device="cuda", dtype=torch.float16)
(a @ a).sum().item()
x, w = torch.randn(1, 3, 64, 64, device="cuda"), torch.randn(8, 3, 3, 3, device="cuda")
torch.nn.functional.conv2d(x, w).sum().item()
q = torch.randn(1, 4, 128, 64, device="cuda", dtype=torch.float16)
torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().item()
torch.cuda.synchronize()
free, total = torch.cuda.mem_get_info()
print(total - free - torch.cuda.memory_reserved(), torch.version.cuda)
"""


def used_mib() -> float:
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                         check=True, capture_output=True, text=True).stdout
    return float(out.split()[0])


def context_mib(mode: str | None, probe: bool) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_MODULE_LOADING", "PYTORCH_NVML_BASED_CUDA_CHECK")}
    if mode is not None:
        env["CUDA_MODULE_LOADING"] = mode
    before = used_mib()
    out = subprocess.run([sys.executable, "-c", CHILD.format(probe=probe)], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return int(out[0]) / 2**20 - before, out[1]


def main() -> None:
    import torch

    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU")
    print(f"{'context (MiB, outside the allocator)':38} {'run 1':>8} {'run 2':>8}  CUDA runtime")
    for label, mode, probe in (("lazy", "LAZY", False), ("eager", "EAGER", False),
                               ("is_available first, variable unset", None, True)):
        runs = [context_mib(mode, probe) for _ in range(2)]
        print(f"{label:38} {runs[0][0]:8.0f} {runs[1][0]:8.0f}  {runs[0][1]}", flush=True)


if __name__ == "__main__":
    main()

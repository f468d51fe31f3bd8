"""The GPU catalog: memory, bandwidth and peak tensor throughput of the cards people actually use.

Throughput is dense (no 2:4 sparsity) FP16/BF16 tensor-core TFLOPS with FP32 accumulate, the mode PyTorch matmuls
run in. GeForce cards run FP32 accumulate at half their FP16-accumulate rate, so their figures here are half the
headline "FP16 tensor" number; datacenter cards (T4, L4, A10, A100, H100, H200) run both at the same rate.
Datacenter datasheets print sparsity-doubled figures; those are halved here.

Where NVIDIA's whitepaper has no table for a card, the figure is derived the way the whitepapers compute theirs:
SMs x boost clock x 512 FLOP/clock/SM (4 tensor cores per SM on GA10x, AD10x and GB20x, FP16 in, FP32 accumulate;
8 per SM on TU10x, each 64 FP16 FMA/clock, halved for FP32 accumulate on GeForce), with SM count, boost clock and
memory bus from NVIDIA's product page. The source field says which. Cards with no tensor cores (GTX 16, P100) run
PyTorch's FP32-accumulate half matmul on the FP32 units, so theirs is the FP32 rate (their FP16 rate accumulates in
FP16), said in the source. No card before Ampere has BF16.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from onecard.core.errors import ConfigError

__all__ = ["GpuSpec", "GPUS", "lookup", "match_detected", "custom"]


@dataclass(frozen=True)
class GpuSpec:
    """One card. Units live in the names: GiB, GB/s, TFLOPS."""

    key: str
    name: str
    vram_gib: float
    bandwidth_gbs: float
    fp16_tflops: float
    bf16_tflops: float
    bf16: bool
    compute_capability: tuple[int, int]
    aliases: tuple[str, ...] = ()
    source: str = ""
    cuda_gib: float | None = None  # what a CUDA process can allocate at most (see _CUDA_TOTAL); None: vram_gib
    cuda_source: str = ""
    nvml_gib: float | None = None  # the total nvidia-smi / NVML report (_NVML_TOTAL_MIB); None: not known

    @property
    def driver_reserved_gib(self) -> float:
        """What NVML reports as total but CUDA never hands out (nvidia-smi's total less CUDA's). NVML's v1 memory
        query counts it as used even on an idle card, so a device-wide NVML reading holds it (0 where unknown)."""
        return max(0.0, self.nvml_gib - self.usable_gib) if self.nvml_gib is not None else 0.0

    @property
    def usable_gib(self) -> float:
        """The memory a process can have: CUDA's total on Linux (the size sold less what the driver keeps), the
        figure every budget starts from. `vram_gib` is the size sold, for display."""
        return self.cuda_gib if self.cuda_gib is not None else self.vram_gib


_GA102 = "NVIDIA Ampere GA102 GPU Architecture whitepaper v2"
_ADA = "NVIDIA Ada GPU Architecture whitepaper v2.1"
_BW = "NVIDIA RTX Blackwell GPU Architecture whitepaper"
_AMPERE_DERIVED = f"derived: SMs x boost x 512 FLOP/clk/SM ({_GA102} rate); NVIDIA product page"
_ADA_DERIVED = f"derived: SMs x boost x 512 FLOP/clk/SM ({_ADA} rate); NVIDIA product page"
_BW_DERIVED = f"derived: SMs x boost x 512 FLOP/clk/SM ({_BW}, Table 3 rate); NVIDIA product page"
_TURING = "NVIDIA Turing GPU Architecture whitepaper"
_TURING_DERIVED = f"derived: SMs x boost x 512 FLOP/clk/SM ({_TURING}, Appendix A GeForce rate); NVIDIA product page"
_NO_TENSOR = "no tensor cores: FP32 rate, cores x 2 x boost (FP16-accumulate shader rate {}); NVIDIA product page"
_V100 = ("NVIDIA Tesla V100 datasheet ({}, 16/32GB): tensor performance {} TFLOPS, 900 GB/s; FP32 accumulate at "
         "full rate (V100 whitepaper); Volta has no BF16")

# key, name, vram GiB, bandwidth GB/s, fp16 TFLOPS, bf16 TFLOPS, compute capability, aliases, source
_TABLE: tuple[tuple[str, str, float, float, float, float, tuple[int, int], tuple[str, ...], str], ...] = (
    # Turing GeForce (sm_75)
    ("rtx-2060", "NVIDIA GeForce RTX 2060", 6, 336, 25.8, 0.0, (7, 5), ("rtx-2060-6gb",),
     f"{_TURING_DERIVED}: 30 SMs, 1680 MHz, 192-bit 14 Gbps"),
    ("rtx-2060-super", "NVIDIA GeForce RTX 2060 SUPER", 8, 448, 28.7, 0.0, (7, 5), (),
     f"{_TURING_DERIVED}: 34 SMs, 1650 MHz, 256-bit 14 Gbps"),
    ("rtx-2070", "NVIDIA GeForce RTX 2070", 8, 448, 29.9, 0.0, (7, 5), (),
     f"{_TURING}, Appendix A (GeForce RTX 2070, reference clocks): FP16 tensor w/ FP32 acc 29.9/59.7, 448 GB/s"),
    ("rtx-2070-super", "NVIDIA GeForce RTX 2070 SUPER", 8, 448, 36.2, 0.0, (7, 5), (),
     f"{_TURING_DERIVED}: 40 SMs, 1770 MHz, 256-bit 14 Gbps"),
    ("rtx-2080", "NVIDIA GeForce RTX 2080", 8, 448, 40.3, 0.0, (7, 5), (),
     f"{_TURING}, Appendix A (GeForce RTX 2080, reference clocks): FP16 tensor w/ FP32 acc 40.3/80.5, 448 GB/s"),
    ("rtx-2080-super", "NVIDIA GeForce RTX 2080 SUPER", 8, 496, 44.6, 0.0, (7, 5), (),
     f"{_TURING_DERIVED}: 48 SMs, 1815 MHz, 256-bit 15.5 Gbps"),
    ("rtx-2080-ti", "NVIDIA GeForce RTX 2080 Ti", 11, 616, 53.8, 0.0, (7, 5), (),
     f"{_TURING}, Appendix A (GeForce RTX 2080 Ti, reference clocks): FP16 tensor w/ FP32 acc 53.8/107.6, 616 GB/s"),
    ("titan-rtx", "NVIDIA TITAN RTX", 24, 672, 130.5, 0.0, (7, 5), (),
     "Tom's Hardware Titan RTX review: FP16 tensor w/ FP32 acc 130.5 TFLOPS, not halved as on GeForce "
     "(72 SMs x 1770 MHz x 1024 FLOP/clk/SM); NVIDIA product page: 384-bit 14 Gbps, 672 GB/s"),
    ("gtx-1660-ti", "NVIDIA GeForce GTX 1660 Ti", 6, 288, 5.4, 0.0, (7, 5), ("1660-ti",),
     _NO_TENSOR.format(10.9) + ": 1536 cores, 1770 MHz, 192-bit 12 Gbps"),
    ("gtx-1650", "NVIDIA GeForce GTX 1650", 4, 128, 3.0, 0.0, (7, 5), ("1650",),
     _NO_TENSOR.format(6.0) + ": 896 cores, 1665 MHz, 128-bit GDDR5 8 Gbps (the 2020 GDDR6 card, same name: "
     "192 GB/s)"),
    # Ampere GeForce (sm_86)
    ("rtx-3060", "NVIDIA GeForce RTX 3060", 12, 360, 25.5, 25.5, (8, 6), ("rtx-3060-12gb",),
     f"{_AMPERE_DERIVED}: 28 SMs, 1777 MHz, 192-bit 15 Gbps"),
    ("rtx-3070", "NVIDIA GeForce RTX 3070", 8, 448, 40.6, 40.6, (8, 6), (),
     f"{_GA102}, Appendix A (GeForce RTX 3070): FP16 tensor w/ FP32 acc 40.6/81.3, 448 GB/s"),
    ("rtx-3080", "NVIDIA GeForce RTX 3080", 10, 760, 59.5, 59.5, (8, 6), ("rtx-3080-10gb",),
     f"{_GA102}, Table 2 (GeForce RTX 3080): FP16 tensor w/ FP32 acc 59.5/119, 760 GB/s"),
    ("rtx-3080-12gb", "NVIDIA GeForce RTX 3080 12GB", 12, 912, 61.3, 61.3, (8, 6), (),
     f"{_AMPERE_DERIVED}: 70 SMs, 1710 MHz, 384-bit 19 Gbps"),
    ("rtx-3090", "NVIDIA GeForce RTX 3090", 24, 936, 71.0, 71.0, (8, 6), (),
     f"{_GA102}, Appendix A (GeForce RTX 3090): FP16/BF16 tensor w/ FP32 acc 71/142, 936 GB/s"),
    ("rtx-3090-ti", "NVIDIA GeForce RTX 3090 Ti", 24, 1008, 80.0, 80.0, (8, 6), (),
     f"{_AMPERE_DERIVED}: 84 SMs, 1860 MHz, 384-bit 21 Gbps"),
    # Ada GeForce (sm_89)
    ("rtx-4060", "NVIDIA GeForce RTX 4060", 8, 272, 30.2, 30.2, (8, 9), (),
     f"{_ADA_DERIVED}: 24 SMs, 2460 MHz, 128-bit 17 Gbps"),
    ("rtx-4060-ti-8gb", "NVIDIA GeForce RTX 4060 Ti 8GB", 8, 288, 44.1, 44.1, (8, 9), (),
     f"{_ADA_DERIVED}: 34 SMs, 2535 MHz, 128-bit 18 Gbps"),
    ("rtx-4060-ti-16gb", "NVIDIA GeForce RTX 4060 Ti 16GB", 16, 288, 44.1, 44.1, (8, 9), (),
     f"{_ADA_DERIVED}: 34 SMs, 2535 MHz, 128-bit 18 Gbps"),
    ("rtx-4070", "NVIDIA GeForce RTX 4070", 12, 504, 58.3, 58.3, (8, 9), (),
     f"{_ADA_DERIVED}: 46 SMs, 2475 MHz, 192-bit 21 Gbps"),
    ("rtx-4070-super", "NVIDIA GeForce RTX 4070 SUPER", 12, 504, 71.0, 71.0, (8, 9), (),
     f"{_ADA_DERIVED}: 56 SMs, 2475 MHz, 192-bit 21 Gbps"),
    ("rtx-4070-ti", "NVIDIA GeForce RTX 4070 Ti", 12, 504.2, 80.2, 80.2, (8, 9), (),
     f"{_ADA_DERIVED}: 60 SMs, 2610 MHz, 192-bit 21 Gbps (announced as RTX 4080 12GB)"),
    ("rtx-4070-ti-super", "NVIDIA GeForce RTX 4070 Ti SUPER", 16, 672, 88.2, 88.2, (8, 9), (),
     f"{_ADA_DERIVED}: 66 SMs, 2610 MHz, 256-bit 21 Gbps"),
    ("rtx-4080", "NVIDIA GeForce RTX 4080", 16, 716.8, 97.5, 97.5, (8, 9), (),
     f"{_ADA}, Appendix (GeForce RTX 4080): FP16/BF16 tensor w/ FP32 acc 97.5/194.9, 716.8 GB/s"),
    ("rtx-4080-super", "NVIDIA GeForce RTX 4080 SUPER", 16, 736, 104.4, 104.4, (8, 9), (),
     f"{_ADA_DERIVED}: 80 SMs, 2550 MHz, 256-bit 23 Gbps"),
    ("rtx-4090", "NVIDIA GeForce RTX 4090", 24, 1008, 165.2, 165.2, (8, 9), (),
     f"{_ADA}, Appendix A (GeForce RTX 4090): FP16/BF16 tensor w/ FP32 acc 165.2/330.4, 1008 GB/s"),
    # Blackwell GeForce (sm_120)
    ("rtx-5060", "NVIDIA GeForce RTX 5060", 8, 448, 38.4, 38.4, (12, 0), ("rtx-5060-8gb",),
     f"{_BW_DERIVED}: 30 SMs, 2497 MHz, 128-bit 28 Gbps"),
    ("rtx-5060-ti-8gb", "NVIDIA GeForce RTX 5060 Ti 8GB", 8, 448, 47.4, 47.4, (12, 0), ("rtx-5060-ti-8",),
     f"{_BW_DERIVED}: 36 SMs, 2572 MHz, 128-bit 28 Gbps"),
    ("rtx-5060-ti-16gb", "NVIDIA GeForce RTX 5060 Ti 16GB", 16, 448, 47.4, 47.4, (12, 0), ("rtx-5060-ti-16",),
     f"{_BW_DERIVED}: 36 SMs, 2572 MHz, 128-bit 28 Gbps"),
    ("rtx-5070", "NVIDIA GeForce RTX 5070", 12, 672, 61.7, 61.7, (12, 0), (),
     f"{_BW_DERIVED}: 48 SMs, 2512 MHz, 192-bit 28 Gbps"),
    ("rtx-5070-ti", "NVIDIA GeForce RTX 5070 Ti", 16, 896, 87.9, 87.9, (12, 0), (),
     f"{_BW_DERIVED}: 70 SMs, 2452 MHz, 256-bit 28 Gbps"),
    ("rtx-5080", "NVIDIA GeForce RTX 5080", 16, 960, 112.6, 112.6, (12, 0), (),
     f"{_BW_DERIVED}: 84 SMs, 2617 MHz, 256-bit 30 Gbps"),
    ("rtx-5090", "NVIDIA GeForce RTX 5090", 32, 1792, 209.5, 209.5, (12, 0), (),
     f"{_BW}, Table 3 (GeForce RTX 5090): FP16/BF16 tensor w/ FP32 acc 209.5/419, 1792 GB/s"),
    # Datacenter
    ("t4", "NVIDIA T4", 16, 320, 65.0, 0.0, (7, 5), ("tesla-t4",),
     "NVIDIA T4 datasheet: mixed precision (FP16/FP32) 65 TFLOPS, 320 GB/s; Turing has no BF16"),
    ("v100-sxm2-16gb", "Tesla V100-SXM2-16GB", 16, 900, 125.0, 0.0, (7, 0), ("v100", "v100-16gb", "tesla-v100"),
     _V100.format("SXM2", 125)),
    ("v100-sxm2-32gb", "Tesla V100-SXM2-32GB", 32, 900, 125.0, 0.0, (7, 0), ("v100-32gb", "tesla-v100-32gb"),
     _V100.format("SXM2", 125)),
    ("v100-pcie-16gb", "Tesla V100-PCIE-16GB", 16, 900, 112.0, 0.0, (7, 0), (),
     _V100.format("PCIe", 112)),
    ("v100-pcie-32gb", "Tesla V100-PCIE-32GB", 32, 900, 112.0, 0.0, (7, 0), (),
     _V100.format("PCIe", 112)),
    ("p100", "Tesla P100-PCIE-16GB", 16, 732, 9.3, 0.0, (6, 0), ("p100-16gb", "p100-pcie-16gb", "tesla-p100"),
     "NVIDIA Tesla P100 PCIe datasheet (16GB): FP32 9.3 TFLOPS, FP16 18.7 (half2, FP16 accumulate), 732 GB/s; "
     "no tensor cores, so the FP32 rate (SXM2: 10.6/21.2)"),
    ("a10", "NVIDIA A10", 24, 600, 125.0, 125.0, (8, 6), (),
     "NVIDIA A10 datasheet: FP16/BF16 tensor core 125 TFLOPS (250 with sparsity), 600 GB/s"),
    ("a10g", "NVIDIA A10G", 24, 600, 70.0, 70.0, (8, 6), (),
     "no NVIDIA datasheet (AWS-only part): 80 SMs x 1710 MHz x 512 FLOP/clk/SM, GeForce-rate accumulate as "
     "AWS/third-party spec sheets give (70 TFLOPS); 600 GB/s as A10"),
    ("l4", "NVIDIA L4", 24, 300, 121.0, 121.0, (8, 9), (),
     "NVIDIA L4 datasheet: FP16/BF16 tensor core 242 TFLOPS with sparsity (121 dense), 300 GB/s"),
    ("a100-40gb", "NVIDIA A100 40GB", 40, 1555, 312.0, 312.0, (8, 0), ("a100-sxm4-40gb", "a100-pcie-40gb"),
     "NVIDIA A100 datasheet (40GB PCIe/SXM): FP16/BF16 tensor core 312 TFLOPS (624 with sparsity), 1,555 GB/s"),
    ("a100-80gb", "NVIDIA A100 SXM 80GB", 80, 2039, 312.0, 312.0, (8, 0), ("a100", "a100-sxm4-80gb"),
     "NVIDIA A100 datasheet (80GB SXM): FP16/BF16 tensor core 312 TFLOPS (624 with sparsity), 2,039 GB/s"),
    ("a100-80gb-pcie", "NVIDIA A100 PCIe 80GB", 80, 1935, 312.0, 312.0, (8, 0), (),
     "NVIDIA A100 datasheet (80GB PCIe): FP16/BF16 tensor core 312 TFLOPS (624 with sparsity), 1,935 GB/s"),
    ("h100-sxm", "NVIDIA H100 SXM 80GB", 80, 3350, 989.5, 989.5, (9, 0), ("h100", "h100-80gb", "h100-sxm5"),
     "NVIDIA H100 datasheet (H100 SXM): FP16/BF16 tensor core 1,979 TFLOPS with sparsity (989.5 dense), 3.35 TB/s"),
    ("h100-pcie", "NVIDIA H100 PCIe 80GB", 80, 2000, 756.5, 756.5, (9, 0), (),
     "NVIDIA H100 datasheet (H100 PCIe): FP16/BF16 tensor core 1,513 TFLOPS with sparsity (756.5 dense), 2 TB/s"),
    ("h100-nvl", "NVIDIA H100 NVL 94GB", 94, 3900, 835.5, 835.5, (9, 0), (),
     "NVIDIA H100 datasheet (H100 NVL): FP16/BF16 tensor core 1,671 TFLOPS with sparsity (835.5 dense), 3.9 TB/s"),
    ("h200", "NVIDIA H200 SXM 141GB", 141, 4800, 989.5, 989.5, (9, 0), ("h200-sxm",),
     "NVIDIA H200 datasheet (H200 SXM): FP16/BF16 tensor core 1,979 TFLOPS with sparsity (989.5 dense), 4.8 TB/s"),
    ("h200-nvl", "NVIDIA H200 NVL 141GB", 141, 4800, 835.5, 835.5, (9, 0), (),
     "NVIDIA H200 datasheet (H200 NVL): FP16/BF16 tensor core 1,671 TFLOPS with sparsity (835.5 dense), 4.8 TB/s"),
)

# CUDA's total memory on Linux, GiB: `torch.cuda.get_device_properties(0).total_memory`, the "X GiB total capacity"
# of PyTorch's out-of-memory message, ultralytics' "CUDA:0 (<name>, N MiB)" line, unsloth's "Max memory = X GB". The
# driver keeps 0.2-0.9 GiB of the size sold (nvidia-smi's total), more on newer drivers (Colab's T4: 15110 MiB in
# 2020-22, 14913 MiB in 2025-26), so each figure is the lowest recent Linux reading found in public logs (collected
# 2026-12-07; fs: find_string ids of the stored public files, owner/repo#N issues). Windows reports about the whole
# nvidia-smi size, which is not usable either. A card with no Linux reading takes its nvidia-smi total less the
# largest reserve seen on a consumer card (505 MiB, RTX 5090), said in its source.
_RESERVE_MIB = 505


def _no_linux_reading(total_mib: int, seen: str) -> tuple[float, str]:
    """A card's CUDA total where no Linux reading was found: its full size less the largest consumer reserve."""
    return (total_mib - _RESERVE_MIB) / 1024, f"no Linux reading: {total_mib} MiB ({seen}) less {_RESERVE_MIB} MiB"


_CUDA_TOTAL: dict[str, tuple[float, str]] = {
    "rtx-2060": (5.78, "YOLOv5 2024-4-17, torch 2.2.2: 5918 MiB, OS not stated (fs:24616949146); Windows: 6144"),
    "rtx-2060-super": _no_linux_reading(8192, "nvidia-smi, fs:54992829250"),
    "rtx-2070": (7.60, "torch 2.5.1 on Linux, driver 580.173.02: '7782 MiB total' (fs:67154999582)"),
    "rtx-2070-super": (7.79, "ultralytics 8.0.231, torch 2.1.1: 7972 MiB, OS not stated (fs:2537917375); 7982 MiB "
                       "with torch 1.13 (fs:22141273372)"),
    "rtx-2080": (7.60, "hashcat 7.1.2 on Linux, NVIDIA OpenCL on CUDA 13.1: 7783 MB device total (fs:51815549451)"),
    "rtx-2080-super": (7.79, "YOLOv5 v7.0 on Linux, torch 1.13.1: 7982 MiB (fs:9972342036)"),
    "rtx-2080-ti": (10.75, "ultralytics 8.3.75, torch 2.1 (NGC): 11012 MiB (fs:57589923636); 11019-11020 MiB with "
                    "torch 1.8-1.11 (fs:4575637089, fs:3565853966)"),
    "titan-rtx": (23.64, "YOLOv5 v7.0 on Linux, torch 1.13.1: 24212 MiB (fs:9266372583); nvidia-smi 24211 MiB free "
                  "on an idle card (fs:67067871126)"),
    "gtx-1660-ti": (5.78, "YOLOv3 on Linux, torch 1.8.1: 5914 MiB (fs:27844786933); Windows: 6144"),
    "gtx-1650": (3.81, "YOLOv5, torch 1.11-1.13, a laptop's GTX 1650 (the same device name): 3904 MiB "
                 "(fs:23590090742)"),
    "rtx-3060": (11.63, "ultralytics 8.4.24, torch 2.10: 11910 MiB (fs:55688940935)"),
    "rtx-3070": (7.57, "ultralytics 8.3.75, torch 2.6: 7753 MiB, OS not stated (fs:67336073362); OOMs say 7.76-7.78"),
    "rtx-3080": (9.77, "ultralytics 8.4.35, torch 2.6: 10002 MiB (fs:67306827761); zai-org/CogVideo#34: 9.78"),
    "rtx-3080-12gb": (11.83, "YOLOv5 export log: 'NVIDIA GeForce RTX 3080, 12117MiB' (fs:67252257240)"),
    "rtx-3090": (23.69, "unsloth log 'Max memory = 23.691 GB' (fs:10507211809); YOLOv5 24260 MiB (fs:11000330188)"),
    "rtx-3090-ti": (23.55, "torch 2.13, driver 590.44.01: total_memory=24114MB, nvidia-smi 24564 MiB (fs:62087262535)"),
    "rtx-4060": (7.62, "ultralytics 8.4.75, torch 2.5.1: 7807 MiB, OS not stated (fs:61661377491)"),
    "rtx-4060-ti-8gb": (7.62, "ultralytics 8.4.82 on Linux 6.17, torch 2.12.1: 7806 MiB (fs:56376344927)"),
    "rtx-4060-ti-16gb": _no_linux_reading(16380, "nvidia-smi, fs:67364706067"),
    "rtx-4070": (11.70, "ComfyUI on Linux, torch 2.6: vram_total 12557156352 B (fs:17624514981)"),
    "rtx-4070-super": _no_linux_reading(12282, "ultralytics, fs:66518564485"),
    "rtx-4070-ti": (11.70, "Kwai-Kolors/Kolors#11: '11.70 GiB total capacity', nvidia-smi 12282 MiB, driver 545"),
    "rtx-4070-ti-super": (15.56, "log total_memory=15934MB (fs:21059009318); 15974 MiB on driver 560 "
                          "(fs:62087872125)"),
    "rtx-4080": (15.67, "total_memory=16049MB, OS not stated (fs:22567041692)"),
    "rtx-4080-super": (15.57, "ultralytics 8.4.90, torch 2.12.1: 15944 MiB, OS not stated (fs:56169284282)"),
    "rtx-4090": (23.61, "pinokiofactory/flux-webui#11: '23.61 GiB total capacity'; 24209-24217 MiB in ultralytics"),
    "rtx-5060": _no_linux_reading(8151, "ultralytics on Windows, fs:61950086157"),
    "rtx-5060-ti-8gb": _no_linux_reading(8151, "nvidia-smi on Windows, fs:71411327399"),
    "rtx-5060-ti-16gb": (15.48, "ultralytics 8.4.63 on Linux, torch 2.12: 15848 MiB (fs:66917428739); 15850 MiB "
                         "with torch 2.10 (fs:66246485358)"),
    "rtx-5070": _no_linux_reading(12227, "on Windows, fs:68964490041"),
    "rtx-5070-ti": _no_linux_reading(16303, "nvidia-smi, fs:70510372376"),
    "rtx-5080": (15.47, "ultralytics on Linux: 'NVIDIA GeForce RTX 5080, 15840MiB' (fs:56229221341)"),
    "rtx-5090": (31.35, "ultralytics 8.4.61, torch 2.12: 32102 MiB (fs:59847601954); OOMs say 31.36-31.37"),
    "t4": (14.56, "Colab, ultralytics 8.4.24, torch 2.10: 14913 MiB (fs:54177101839); 15110 MiB in 2020-22"),
    "v100-sxm2-16gb": (15.75, "YOLOv5, torch 1.7: 16130 MiB (fs:26895980974); 16160 MiB with torch 1.10 "
                       "(fs:24223117581)"),
    "v100-sxm2-32gb": (31.73, "YOLOv5 v7.0, torch 1.12.1: 32494 MiB (fs:6657715330); 32510.5 MB (fs:45450393252)"),
    "v100-pcie-16gb": _no_linux_reading(16384, "nvidia-smi on Linux, driver 580.126.09, fs:70349799492"),
    "v100-pcie-32gb": (31.75, "YOLOv5 2022-3-15, torch 1.11: 32510.5 MB (fs:34091627320)"),
    "p100": (15.89, "Kaggle, ultralytics 8.2.58, torch 2.1.2: 16269 MiB (fs:39778599802); 16276-16281 MiB in "
             "other Kaggle logs"),
    "a10": (21.99, "zai-org/CogVLM#236, Lambda Labs A10: '21.99 GiB total capacity'"),
    "a10g": (22.06, "TorchCodec docs build: total_memory=22587MB (fs:67234836605)"),
    "l4": (22.03, "Colab, ultralytics, torch 2.11: 22563 MiB (fs:71094248218)"),
    "a100-40gb": (39.39, "unsloth log 'A100-SXM4-40GB. Max memory = 39.394 GB' (fs:34277959423)"),
    "a100-80gb": (79.14, "ultralytics, torch 2.3.1: 81038 MiB (fs:17297076502); OOM '79.14 GiB' "
                  "(lianqi1008/Control-GIC#6); nvidia-smi 81920 MiB"),
    "a100-80gb-pcie": (79.15, "unsloth log 'A100 80GB PCIe. Max memory = 79.151 GB' (fs:2805250333)"),
    "h100-sxm": (79.11, "vllm-project/vllm#27508: '79.11 GiB total capacity'; total_memory=81082MB "
                 "(fs:16920867219)"),
    "h100-pcie": (79.11, "total_memory=81008MB (fs:33356850601)"),
    "h100-nvl": (93.00, "ali-vilab/VACE#56, RunPod H100 NVL: '93.00 GiB total capacity'"),
    "h200": (139.80, "total_memory=143156MB (fs:2097843420, fs:61377807633)"),
    "h200-nvl": (139.80, "'143771 MiB (139.80 GB via torch)' (fs:54844431486)"),
}

# nvidia-smi's total, MiB, where a public log shows it for the card (Linux unless no Linux one was found; the same
# collection as _CUDA_TOTAL, 2026-12-07; modal-labs/modal-client#2797 for T4, A10, L4, A100 40GB/80GB and H100;
# Turing, Volta and Pascal: fs:68884715646 RTX 2060, fs:54992829250 2060 SUPER (OS not stated), fs:60573798326 2070
# (Windows), fs:71464039277 2080, fs:62466613994 2080 Ti, fs:57512902144 TITAN RTX, fs:71645543951 V100 SXM2 16GB,
# fs:68680818775 V100 SXM2 32GB, fs:70349799492 V100 PCIe 16GB, fs:55730460105 P100; Blackwell: fs:56434670264 RTX
# 5060 Ti 16GB (OS not stated; 16303 MiB in fs:71155525970), fs:71411327399 5060 Ti 8GB (Windows), fs:69424190049
# 5060 (Windows)).
_NVML_TOTAL_MIB = {
    "rtx-2060": 6144, "rtx-2060-super": 8192, "rtx-2070": 8192, "rtx-2080": 8192, "rtx-2080-ti": 11264,
    "titan-rtx": 24576, "rtx-3060": 12288, "rtx-3070": 8192, "rtx-3080": 10240, "rtx-3090": 24576, "rtx-3090-ti": 24564,
    "rtx-4060-ti-16gb": 16380, "rtx-4070": 12282, "rtx-4070-ti": 12282, "rtx-4070-ti-super": 16376, "rtx-4080": 16376,
    "rtx-4090": 24564, "rtx-5060": 8151, "rtx-5060-ti-8gb": 8151, "rtx-5060-ti-16gb": 16311, "rtx-5070-ti": 16303,
    "rtx-5080": 16303, "rtx-5090": 32607, "t4": 15360, "a10": 23028, "l4": 23034, "a100-40gb": 40960,
    "a100-80gb": 81920, "a100-80gb-pcie": 81920, "h100-sxm": 81559, "h100-pcie": 81559, "h100-nvl": 95830,
    "h200": 143771, "h200-nvl": 143771, "v100-sxm2-16gb": 16384, "v100-sxm2-32gb": 32768, "v100-pcie-16gb": 16384,
    "p100": 16384,
}

GPUS: tuple[GpuSpec, ...] = tuple(
    # BF16 tensor cores arrived with Ampere (compute capability 8.0).
    GpuSpec(key, name, float(vram), float(bw), fp16, bf16, cc >= (8, 0), cc, aliases, source,
            round(_CUDA_TOTAL[key][0], 2), _CUDA_TOTAL[key][1],
            round(_NVML_TOTAL_MIB[key] / 1024, 3) if key in _NVML_TOTAL_MIB else None)
    for key, name, vram, bw, fp16, bf16, cc, aliases, source in _TABLE
)

_VENDOR_WORDS = {"nvidia", "geforce", "tesla"}
# Tokens NVML puts in datacenter names that say form factor or memory type, not which chip it is.
_FORM_WORDS = {"sxm", "sxm2", "sxm4", "sxm5", "hbm2", "hbm2e", "hbm3", "hbm3e", "pcie", "nvl"}
_GB = re.compile(r"(\d+)gb")


def _tokens(name: str) -> list[str]:
    return [t for t in re.findall(r"[a-z0-9]+", name.lower()) if t not in _VENDOR_WORDS]


def _norm(name: str) -> str:
    return "".join(_tokens(name))


def _index() -> dict[str, GpuSpec]:
    index: dict[str, GpuSpec] = {}
    for gpu in GPUS:
        for spelling in (gpu.key, gpu.name, *gpu.aliases):
            n = _norm(spelling)
            # "4070ti" is as common as "rtx 4070 ti".
            for form in (n, n.removeprefix("rtx")):
                if index.setdefault(form, gpu) is not gpu:
                    raise AssertionError(f"GPU catalog: {spelling!r} names both {index[form].key} and {gpu.key}")
    return index


_INDEX = _index()


def lookup(name: str) -> GpuSpec:
    """The catalog entry for a card name, key, alias or NVML device name, in any spelling.

    Raises:
        ConfigError: no card matches; the message names the closest keys.
    """
    gpu = _INDEX.get(_norm(name)) or match_detected(name)
    if gpu is not None:
        return gpu
    import difflib  # only on this error path: keeps the import of this module fast

    query = _norm(name)
    close = difflib.get_close_matches(query, list(_INDEX), n=8, cutoff=0.6)
    close.sort(key=lambda c: query not in c)  # "rtx 4060 ti" suggests the 4060 Ti cards before the 4070 Ti
    keys = list(dict.fromkeys(_INDEX[c].key for c in close))[:4]
    hint = f"did you mean {', '.join(keys)}? " if keys else ""
    raise ConfigError(
        f"unknown GPU {name!r}",
        f"{hint}Known cards: {', '.join(g.key for g in GPUS)}. "
        "For a card not listed, give its memory size instead (a custom card).",
    )


def _form(tokens: list[str]) -> str:
    # SXM is what an unqualified datacenter name means ("NVIDIA H100 80GB HBM3", "NVIDIA H200").
    return "pcie" if "pcie" in tokens else "nvl" if "nvl" in tokens else ""


def _base(tokens: list[str]) -> str:
    return "".join(t for t in tokens if t not in _FORM_WORDS and not _GB.fullmatch(t))


def match_detected(name: str, total_bytes: int | None = None) -> GpuSpec | None:
    """Map a device name as NVML or torch reports it to a catalog entry, or None when the card is not listed.

    Cards sold in several memory sizes under one name (RTX 3080 10/12 GB, A100 40/80 GB) are told apart by
    `total_bytes`, else by a size in the name ("NVIDIA A100-SXM4-80GB"); without either such a name is None.
    Laptop parts do not match desktop cards.
    """
    tokens = _tokens(name)
    base, form = _base(tokens), _form(tokens)
    if total_bytes is not None:
        gib: float | None = total_bytes / 2**30
    else:
        sized = [int(m.group(1)) for t in tokens if (m := _GB.fullmatch(t))]
        gib = float(sized[0]) if sized else None
    family = [g for g in GPUS if _base(_tokens(g.name)) == base]
    if gib is not None:
        # NVML reports a little less than the size sold (ECC, reserved memory): 15.0 GiB for a 16 GB T4.
        family = [g for g in family if abs(g.vram_gib - gib) <= 0.12 * g.vram_gib]
    candidates = [g for g in family if _form(_tokens(g.name)) == form] or family
    if gib is not None and candidates:
        return min(candidates, key=lambda g: abs(g.vram_gib - gib))
    # Without a size, "RTX 4060 Ti" could be the 8 or the 16 GB card.
    return candidates[0] if len(candidates) == 1 else None


def custom(vram_gib: float) -> GpuSpec:
    """A card known only by its memory size; throughput and bandwidth are unknown (0.0).

    Raises:
        ConfigError: the size is not positive.
    """
    if not vram_gib > 0:
        raise ConfigError(f"GPU memory must be positive, got {vram_gib!r} GiB", "give the card's memory, e.g. 12")
    return GpuSpec(
        key=f"custom-{vram_gib:g}gib",
        name=f"custom {vram_gib:g} GiB card",
        vram_gib=float(vram_gib),
        bandwidth_gbs=0.0,
        fp16_tflops=0.0,
        bf16_tflops=0.0,
        bf16=False,
        compute_capability=(0, 0),
        source="memory size given by the user",
    )

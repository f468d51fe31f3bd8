import re
import subprocess
import sys

import pytest

from onecard.core.errors import ConfigError
from onecard.core.gpus import GPUS, GpuSpec, custom, lookup, match_detected

MIB = 2**20


@pytest.mark.parametrize(
    "spelling", ["4070ti", "rtx-4070-ti", "RTX 4070 Ti", "nvidia geforce rtx 4070 ti", "rtx4070ti", "RTX_4070_TI"]
)
def test_lookup_spellings_resolve_to_one_card(spelling: str) -> None:
    assert lookup(spelling).key == "rtx-4070-ti"


@pytest.mark.parametrize(
    ("spelling", "key"),
    [("4090", "rtx-4090"), ("RTX 4070 SUPER", "rtx-4070-super"), ("4070 ti super", "rtx-4070-ti-super"),
     ("rtx 3080", "rtx-3080"), ("3080 12GB", "rtx-3080-12gb"), ("A100", "a100-80gb"), ("a100 40gb", "a100-40gb"),
     ("H100", "h100-sxm"), ("h100 pcie", "h100-pcie"), ("Tesla T4", "t4"), ("A10G", "a10g"), ("a10", "a10"),
     ("NVIDIA A100-SXM4-40GB", "a100-40gb"), ("NVIDIA H100 80GB HBM3", "h100-sxm")],
)
def test_lookup_aliases_and_device_names(spelling: str, key: str) -> None:
    assert lookup(spelling).key == key


@pytest.mark.parametrize(
    ("spelling", "key"),
    [("2060", "rtx-2060"), ("rtx 2060", "rtx-2060"), ("rtx-2060-6gb", "rtx-2060"), ("2060 super", "rtx-2060-super"),
     ("RTX 2070", "rtx-2070"), ("2070 SUPER", "rtx-2070-super"), ("rtx2080", "rtx-2080"),
     ("RTX 2080 Super", "rtx-2080-super"), ("RTX 2080 Ti", "rtx-2080-ti"), ("2080ti", "rtx-2080-ti"),
     ("Titan RTX", "titan-rtx"), ("GTX 1660 Ti", "gtx-1660-ti"), ("1660 ti", "gtx-1660-ti"), ("gtx1650", "gtx-1650"),
     ("1650", "gtx-1650"), ("v100", "v100-sxm2-16gb"), ("Tesla V100", "v100-sxm2-16gb"),
     ("v100 16gb", "v100-sxm2-16gb"), ("tesla-v100-32gb", "v100-sxm2-32gb"), ("V100 32GB", "v100-sxm2-32gb"),
     ("v100-pcie-16gb", "v100-pcie-16gb"), ("Tesla V100-PCIE-32GB", "v100-pcie-32gb"), ("P100", "p100"),
     ("tesla p100", "p100"), ("Tesla P100-PCIE-16GB", "p100")],
)
def test_lookup_finds_turing_volta_and_pascal_cards(spelling: str, key: str) -> None:
    assert lookup(spelling).key == key


@pytest.mark.parametrize(
    "key",
    ["rtx-2060", "rtx-2060-super", "rtx-2070", "rtx-2070-super", "rtx-2080", "rtx-2080-super", "rtx-2080-ti",
     "titan-rtx", "gtx-1660-ti", "gtx-1650", "v100-sxm2-16gb", "v100-sxm2-32gb", "v100-pcie-16gb", "v100-pcie-32gb",
     "p100"],
)
def test_pre_ampere_cards_have_no_bf16_and_no_flash_sdpa(key: str) -> None:
    """PyTorch's flash SDPA kernel needs compute capability 8.0; BF16 arrived with Ampere."""
    gpu = lookup(key)
    assert gpu.compute_capability < (8, 0)
    assert gpu.bf16 is False and gpu.bf16_tflops == 0.0


def test_pre_ampere_compute_capabilities() -> None:
    assert lookup("rtx-2080-ti").compute_capability == (7, 5)  # Turing
    assert lookup("gtx-1650").compute_capability == (7, 5)
    assert lookup("v100").compute_capability == (7, 0)  # Volta
    assert lookup("p100").compute_capability == (6, 0)  # Pascal


def test_lookup_refuses_v100_pcie_without_a_size() -> None:
    with pytest.raises(ConfigError) as info:
        lookup("v100 pcie")
    assert info.value.fix is not None and "v100-pcie-16gb" in info.value.fix


def test_lookup_bad_name_names_the_value_and_close_keys() -> None:
    with pytest.raises(ConfigError) as info:
        lookup("rtx 4070 tie")
    assert "'rtx 4070 tie'" in info.value.what
    assert info.value.fix is not None
    assert "did you mean rtx-4070-ti" in info.value.fix
    assert "rtx-4090" in info.value.fix  # the fix lists every known key


def test_lookup_refuses_a_name_sold_in_two_memory_sizes() -> None:
    with pytest.raises(ConfigError) as info:
        lookup("RTX 4060 Ti")
    assert info.value.fix is not None
    assert "rtx-4060-ti-8gb" in info.value.fix and "rtx-4060-ti-16gb" in info.value.fix


def test_catalog_has_the_cards_the_brief_lists() -> None:
    keys = {g.key for g in GPUS}
    wanted = {
        "rtx-3060", "rtx-3080", "rtx-3080-12gb", "rtx-3090", "rtx-3090-ti", "rtx-4060-ti-8gb", "rtx-4060-ti-16gb",
        "rtx-4070", "rtx-4070-super", "rtx-4070-ti", "rtx-4070-ti-super", "rtx-4080", "rtx-4080-super", "rtx-4090",
        "rtx-5070", "rtx-5070-ti", "rtx-5080", "rtx-5090", "t4", "l4", "a10g", "a100-40gb", "a100-80gb",
        "h100-sxm", "h100-pcie", "h200",
    }
    assert wanted <= keys


@pytest.mark.parametrize("gpu", GPUS, ids=lambda g: g.key)
def test_every_entry_is_sane(gpu: GpuSpec) -> None:
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", gpu.key)
    assert gpu.vram_gib > 0 and gpu.bandwidth_gbs > 0 and gpu.fp16_tflops > 0
    assert gpu.bf16 == (gpu.compute_capability >= (8, 0))
    assert (gpu.bf16_tflops > 0) == gpu.bf16
    if gpu.bf16:
        assert gpu.bf16_tflops == gpu.fp16_tflops  # same tensor-core rate for both, FP32 accumulate
    assert gpu.source
    # A card's own name, with its memory as NVML reports it (a little under the size sold), maps back to it.
    assert match_detected(gpu.name, int(gpu.vram_gib * 0.97 * 2**30)) is gpu


def test_keys_are_unique() -> None:
    assert len({g.key for g in GPUS}) == len(GPUS)


@pytest.mark.parametrize(
    ("key", "fp16_tflops", "bandwidth_gbs"),
    [
        # Whitepaper tables, "Peak FP16 Tensor TFLOPS with FP32 Accumulate", dense.
        ("rtx-3080", 59.5, 760),  # Ampere GA102 whitepaper, RTX 3080
        ("rtx-3090", 71.0, 936),  # Ampere GA102 whitepaper, Appendix A
        ("rtx-4080", 97.5, 716.8),  # Ada whitepaper
        ("rtx-4090", 165.2, 1008),  # Ada whitepaper, Appendix A
        ("rtx-5090", 209.5, 1792),  # RTX Blackwell whitepaper, Table 3
        ("a100-40gb", 312.0, 1555),  # A100 datasheet
        ("h100-sxm", 989.5, 3350),  # H100 datasheet, 1,979 with sparsity
        ("rtx-2070", 29.9, 448),  # Turing whitepaper, Appendix A, reference clocks
        ("rtx-2080", 40.3, 448),  # Turing whitepaper, Appendix A
        ("rtx-2080-ti", 53.8, 616),  # Turing whitepaper, Appendix A: half the 107.6 FP16-accumulate rate
        ("v100-sxm2-16gb", 125.0, 900),  # V100 datasheet, SXM2
        ("v100-pcie-32gb", 112.0, 900),  # V100 datasheet, PCIe
    ],
)
def test_figures_match_the_vendor_tables(key: str, fp16_tflops: float, bandwidth_gbs: float) -> None:
    gpu = lookup(key)
    assert gpu.fp16_tflops == fp16_tflops
    assert gpu.bandwidth_gbs == bandwidth_gbs


@pytest.mark.parametrize(
    ("name", "total_mib", "key"),
    [
        # Names and totals as nvidia-smi / NVML report them.
        ("NVIDIA GeForce RTX 4070 Ti", 12282, "rtx-4070-ti"),
        ("NVIDIA GeForce RTX 4070 Ti SUPER", 16376, "rtx-4070-ti-super"),
        ("NVIDIA GeForce RTX 3080", 10240, "rtx-3080"),
        ("NVIDIA GeForce RTX 3080", 12288, "rtx-3080-12gb"),
        ("NVIDIA GeForce RTX 4060 Ti", 8188, "rtx-4060-ti-8gb"),
        ("NVIDIA GeForce RTX 4060 Ti", 16380, "rtx-4060-ti-16gb"),
        ("NVIDIA A100-SXM4-40GB", 40960, "a100-40gb"),
        ("NVIDIA A100-PCIE-40GB", 40960, "a100-40gb"),
        ("NVIDIA A100-SXM4-80GB", 81920, "a100-80gb"),
        ("NVIDIA A100 80GB PCIe", 81920, "a100-80gb-pcie"),
        ("NVIDIA H100 80GB HBM3", 81559, "h100-sxm"),
        ("NVIDIA H100 PCIe", 81559, "h100-pcie"),
        ("NVIDIA H100 NVL", 95830, "h100-nvl"),
        ("NVIDIA H200", 143771, "h200"),
        ("NVIDIA H200 NVL", 143771, "h200-nvl"),
        ("Tesla T4", 15360, "t4"),
        ("NVIDIA L4", 23034, "l4"),
        ("NVIDIA A10G", 23028, "a10g"),
        ("NVIDIA A10", 23028, "a10"),
        ("NVIDIA GeForce RTX 2080 Ti", 11264, "rtx-2080-ti"),
        ("NVIDIA TITAN RTX", 24576, "titan-rtx"),
        ("Tesla V100-SXM2-16GB", 16384, "v100-sxm2-16gb"),
        ("Tesla V100-SXM2-32GB", 32768, "v100-sxm2-32gb"),
        ("Tesla V100-PCIE-16GB", 16384, "v100-pcie-16gb"),
        ("Tesla P100-PCIE-16GB", 16384, "p100"),
    ],
)
def test_match_detected_real_device_names(name: str, total_mib: int, key: str) -> None:
    gpu = match_detected(name, total_mib * MIB)
    assert gpu is not None and gpu.key == key


@pytest.mark.parametrize(
    ("name", "total_mib", "key"),
    [
        # torch.cuda.get_device_name and get_device_properties().total_memory, as public logs print them.
        ("NVIDIA GeForce RTX 2060", 5918, "rtx-2060"),
        ("NVIDIA GeForce RTX 2060", None, "rtx-2060"),
        ("NVIDIA GeForce RTX 2060 SUPER", None, "rtx-2060-super"),
        ("NVIDIA GeForce RTX 2070", 7782, "rtx-2070"),
        ("NVIDIA GeForce RTX 2070 SUPER", 7972, "rtx-2070-super"),
        ("NVIDIA GeForce RTX 2080", 7783, "rtx-2080"),
        ("NVIDIA GeForce RTX 2080 SUPER", 7982, "rtx-2080-super"),
        ("NVIDIA GeForce RTX 2080 Ti", 11012, "rtx-2080-ti"),
        ("NVIDIA TITAN RTX", 24212, "titan-rtx"),
        ("NVIDIA GeForce GTX 1660 Ti", 5914, "gtx-1660-ti"),
        ("NVIDIA GeForce GTX 1650", 3904, "gtx-1650"),
        ("Tesla V100-SXM2-16GB", 16130, "v100-sxm2-16gb"),
        ("Tesla V100-SXM2-16GB", None, "v100-sxm2-16gb"),
        ("Tesla V100-SXM2-32GB", 32494, "v100-sxm2-32gb"),
        ("Tesla V100-PCIE-32GB", 32510, "v100-pcie-32gb"),
        ("Tesla V100-PCIE-16GB", None, "v100-pcie-16gb"),
        ("Tesla P100-PCIE-16GB", 16269, "p100"),
    ],
)
def test_match_detected_torch_names_of_pre_ampere_cards(name: str, total_mib: int | None, key: str) -> None:
    gpu = match_detected(name, None if total_mib is None else total_mib * MIB)
    assert gpu is not None and gpu.key == key


@pytest.mark.parametrize(
    ("spelling", "key"),
    [("5060", "rtx-5060"), ("RTX 5060", "rtx-5060"), ("rtx-5060-8gb", "rtx-5060"), ("rtx5060", "rtx-5060"),
     ("rtx 5060 ti 16gb", "rtx-5060-ti-16gb"), ("5060 Ti 16GB", "rtx-5060-ti-16gb"),
     ("5060ti 16gb", "rtx-5060-ti-16gb"), ("RTX 5060 Ti 16 GB", "rtx-5060-ti-16gb"),
     ("rtx-5060-ti-16", "rtx-5060-ti-16gb"),
     ("NVIDIA GeForce RTX 5060 Ti 16GB", "rtx-5060-ti-16gb"), ("rtx 5060 ti 8gb", "rtx-5060-ti-8gb"),
     ("5060ti 8gb", "rtx-5060-ti-8gb"), ("rtx-5060-ti-8", "rtx-5060-ti-8gb")],
)
def test_lookup_finds_the_rtx_5060_cards(spelling: str, key: str) -> None:
    assert lookup(spelling).key == key


@pytest.mark.parametrize("spelling", ["RTX 5060 Ti", "5060 ti", "5060ti", "NVIDIA GeForce RTX 5060 Ti"])
def test_lookup_refuses_a_5060_ti_without_a_size(spelling: str) -> None:
    # Sold as 8 and 16 GB under one name, like the RTX 4060 Ti.
    with pytest.raises(ConfigError) as info:
        lookup(spelling)
    assert info.value.fix is not None
    assert "rtx-5060-ti-8gb" in info.value.fix and "rtx-5060-ti-16gb" in info.value.fix


@pytest.mark.parametrize(
    ("name", "total_mib", "key"),
    [
        # nvidia-smi totals and CUDA totals from public logs (see _NVML_TOTAL_MIB and _CUDA_TOTAL in gpus.py).
        ("NVIDIA GeForce RTX 5060 Ti", 16311, "rtx-5060-ti-16gb"),  # nvidia-smi
        ("NVIDIA GeForce RTX 5060 Ti", 15848, "rtx-5060-ti-16gb"),  # ultralytics / torch on Linux
        ("NVIDIA GeForce RTX 5060 Ti", 8151, "rtx-5060-ti-8gb"),  # nvidia-smi
        ("NVIDIA GeForce RTX 5060", 8151, "rtx-5060"),
        ("NVIDIA GeForce RTX 5060", None, "rtx-5060"),
    ],
)
def test_match_detected_tells_the_5060_ti_sizes_apart(name: str, total_mib: int | None, key: str) -> None:
    gpu = match_detected(name, None if total_mib is None else total_mib * MIB)
    assert gpu is not None and gpu.key == key


def test_match_detected_5060_ti_without_a_size_or_a_laptop_5060_is_none() -> None:
    assert match_detected("NVIDIA GeForce RTX 5060 Ti") is None
    assert match_detected("NVIDIA GeForce RTX 5060 Laptop GPU", 8151 * MIB) is None


@pytest.mark.parametrize(
    ("key", "sms", "boost_mhz", "vram_gib"),
    [("rtx-5060", 30, 2497, 8), ("rtx-5060-ti-8gb", 36, 2572, 8), ("rtx-5060-ti-16gb", 36, 2572, 16)],
)
def test_rtx_5060_cards_are_blackwell_with_bf16(key: str, sms: int, boost_mhz: int, vram_gib: int) -> None:
    gpu = lookup(key)
    assert gpu.compute_capability == (12, 0)
    assert gpu.bf16 is True
    assert gpu.vram_gib == vram_gib
    # The derivation in the source: SMs x boost x 512 FLOP/clk/SM; 128-bit x 28 Gbps GDDR7.
    assert gpu.fp16_tflops == gpu.bf16_tflops == pytest.approx(sms * boost_mhz * 512 / 1e6, abs=0.05)
    assert gpu.bandwidth_gbs == 128 * 28 / 8
    assert gpu.nvml_gib is not None and gpu.usable_gib < gpu.nvml_gib  # CUDA gets less than nvidia-smi's total


def test_match_detected_tells_v100_16_from_32_by_memory() -> None:
    assert match_detected("Tesla V100-SXM2-16GB", 32494 * MIB) is lookup("v100-sxm2-32gb")
    assert match_detected("Tesla V100-PCIE-32GB", 16130 * MIB) is lookup("v100-pcie-16gb")


def test_match_detected_tells_a100_40_from_80_by_memory_alone() -> None:
    # The torch path reports the same family name; memory decides.
    assert match_detected("NVIDIA A100-SXM4-80GB", 40960 * MIB) is lookup("a100-40gb")
    assert match_detected("NVIDIA A100-SXM4-40GB", 81920 * MIB) is lookup("a100-80gb")
    assert match_detected("NVIDIA A100-SXM4-80GB") is lookup("a100-80gb")  # size from the name


@pytest.mark.parametrize(
    ("name", "total_mib"),
    [
        ("NVIDIA GeForce RTX 4090 Laptop GPU", 16376),  # a laptop part is not the desktop card
        ("NVIDIA GeForce RTX 3060", 8192),  # the 8 GB 3060 (128-bit bus) is not the listed 12 GB card
        ("NVIDIA GeForce RTX 4060 Ti", None),  # 8 or 16 GB: cannot tell
        ("NVIDIA GeForce GTX 1080 Ti", 11264),
        ("NVIDIA GeForce RTX 2060", 12288),  # the 12 GB 2060 (2021) is not the listed 6 GB card
        ("NVIDIA GeForce RTX 2070 with Max-Q Design", 8192),  # a laptop part
        ("Tesla P100-PCIE-12GB", 12288),  # the 12 GB P100 (549 GB/s) is not the listed 16 GB card
        ("AMD Radeon RX 7900 XTX", 24560),
    ],
)
def test_match_detected_unknown_or_ambiguous_is_none(name: str, total_mib: int | None) -> None:
    assert match_detected(name, None if total_mib is None else total_mib * MIB) is None


def test_custom_card() -> None:
    gpu = custom(12)
    assert gpu.name == "custom 12 GiB card"
    assert gpu.vram_gib == 12.0 and gpu.bandwidth_gbs == 0.0 and gpu.fp16_tflops == 0.0
    assert custom(7.5).name == "custom 7.5 GiB card"
    with pytest.raises(ConfigError, match="positive"):
        custom(0)


def test_import_is_light() -> None:
    code = "import sys, onecard.core.gpus; assert not {'torch', 'pynvml', 'psutil'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_budgets_start_from_what_cuda_can_allocate() -> None:
    """The driver keeps 0.2-0.9 GiB of the size sold: a T4 sold as 16 GB gives a process 14.56 GiB on today's Colab
    (ultralytics' 'CUDA:0 (Tesla T4, 14913MiB)'), so a plan's budget starts there, not at 16."""
    for gpu in GPUS:
        assert 0.8 * gpu.vram_gib < gpu.usable_gib < gpu.vram_gib, gpu.key
        assert gpu.cuda_source
        if gpu.nvml_gib is not None:  # nvidia-smi's total holds what CUDA hands out and what the driver keeps
            assert gpu.nvml_gib > gpu.usable_gib and gpu.driver_reserved_gib == gpu.nvml_gib - gpu.usable_gib
    t4 = lookup("t4")
    assert t4.usable_gib == pytest.approx(14913 / 1024, abs=0.01)
    assert lookup("a100-80gb").driver_reserved_gib == pytest.approx(81920 / 1024 - 79.14)
    from onecard.fit.job import FitJob
    from onecard.fit.plan import plan

    p = plan(FitJob(model="yolov8n", job="train", gpu="t4"))
    assert p.budget_gib == pytest.approx(t4.usable_gib - 0.5)
    assert custom(12).usable_gib == 12  # a size the user gives is taken as usable

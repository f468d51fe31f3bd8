import json
import sys
from collections.abc import Callable
from types import SimpleNamespace

import pynvml
import pytest
from rich.console import Console

from onecard.core import device, doctor

MIB = 2**20


def _text(render: Callable[..., None], *args: object) -> str:
    console = Console(record=True, width=200)
    render(*args, console)
    return console.export_text()


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", fail)
    monkeypatch.setattr(device, "_torch_cuda_available", lambda: False)


def test_report_is_json_with_missing_list() -> None:
    report = doctor.report()
    json.dumps(report)
    assert all(set(item) == {"what", "install", "for"} for item in report["missing"])


def test_render_on_a_cpu_machine_says_what_is_missing(no_gpu: None) -> None:
    report = doctor.report()
    text = _text(doctor.render, report)
    for section in ("System", "GPU", "PyTorch", "Accelerators", "Missing"):
        assert section in text
    assert "no NVIDIA GPU found (NVML: NVML Shared Library Not Found)" in text
    assert report["cpu"]["model"] in text
    if report["torch"]["build"] == "cpu":
        assert "(cpu build)" in text
    if not report["accelerators"]["bitsandbytes"]["installed"]:
        # Rendered as text, not rich markup: the extra in brackets survives.
        assert "bitsandbytes  pip install 'onecard[tune]'" in text
    assert "NVIDIA GPU    an NVIDIA card with its driver" in text


def test_render_with_a_gpu_and_cpu_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    # What NVML reports for an RTX 4070 Ti (12,282 MiB total) beside a CPU-only build of torch.
    torch = pytest.importorskip("torch")
    handle = object()
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlSystemGetDriverVersion", lambda: "550.54.14")
    monkeypatch.setattr(pynvml, "nvmlSystemGetCudaDriverVersion", lambda: 12040)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 1)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda i: handle)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda h: "NVIDIA GeForce RTX 4070 Ti")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryInfo",
                        lambda h: SimpleNamespace(total=12282 * MIB, free=11469 * MIB, used=813 * MIB))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCudaComputeCapability", lambda h: (8, 9))
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    text = _text(doctor.render, doctor.report())
    assert ("NVIDIA GeForce RTX 4070 Ti: 12.0 GiB (11.2 free), compute 8.9, bf16 yes, driver 550.54.14 (CUDA 12.4), "
            "catalog rtx-4070-ti") in text
    assert "CPU-only build of torch, but an NVIDIA GPU is present" in text
    assert "CUDA build of torch  the CUDA wheel from https://pytorch.org/get-started/locally/" in text
    assert "an NVIDIA card with its driver" not in text


def test_missing_without_torch(monkeypatch: pytest.MonkeyPatch, no_gpu: None) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    items = doctor.missing(device.probe())
    torch_item = next(i for i in items if i["what"] == "torch")
    assert torch_item["install"] == "pip install 'onecard[tinylm]'"


def test_bench_cpu_measures_positive_numbers() -> None:
    pytest.importorskip("torch")
    result = doctor.bench("cpu", seconds=1.0)
    json.dumps(result)
    assert result["device"] == "cpu" and result["matmul_n"] == 1024
    assert set(result["matmul_tflops"]) == {"fp32", "bf16"}  # no fp16 matmul on CPU
    assert all(v > 0 for v in result["matmul_tflops"].values())
    assert result["bandwidth_gbs"] > 0 and result["bandwidth_bytes"] >= 64 * MIB
    assert "peak" not in result  # no catalog figures for a CPU
    text = _text(doctor.render_bench, result)
    assert "matmul fp32 1024x1024" in text and "GB/s" in text


def test_bench_on_a_catalog_gpu_shows_the_fraction_of_its_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    # An RTX 4070 Ti whose kernels take the times below; the catalog gives its peaks (80.2 TFLOPS fp16 and bf16
    # with FP32 accumulate, 504.2 GB/s): 70.0 / 80.2 = 87%, 60.0 / 80.2 = 75%, 460 / 504.2 = 91%.
    torch = pytest.importorskip("torch")
    tflops = {torch.float32: 38.1, torch.float16: 70.0, torch.bfloat16: 60.0}
    monkeypatch.setattr(doctor, "_time_matmul", lambda torch, dev, n, dtype, *_: 2 * n**3 / tflops[dtype] / 1e12)
    monkeypatch.setattr(doctor, "_time_copy", lambda torch, dev, nbytes, *_: 2 * nbytes / 460e9)
    monkeypatch.setattr(doctor, "supports_bf16", lambda device: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda dev: SimpleNamespace(name="NVIDIA GeForce RTX 4070 Ti", total_memory=12282 * MIB))
    text = _text(doctor.render_bench, doctor.bench("cuda:0"))
    rows = {cells[0]: cells[1:] for line in text.splitlines()
            if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) == 4}
    assert "Measured on NVIDIA GeForce RTX 4070 Ti" in text
    assert rows["matmul fp32 8192x8192"] == ["38.10 TFLOPS", "-", "-"]  # the catalog lists tensor-core peaks only
    assert rows["matmul fp16 8192x8192"] == ["70.00 TFLOPS", "80.2 TFLOPS", "87%"]
    assert rows["matmul bf16 8192x8192"] == ["60.00 TFLOPS", "80.2 TFLOPS", "75%"]
    assert rows["copy 512 MiB"] == ["460 GB/s", "504.2 GB/s", "91%"]


@pytest.mark.gpu
def test_bench_cuda_stays_under_the_catalog_peak() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    result = doctor.bench("cuda", seconds=3.0)
    assert result["matmul_tflops"]["fp16"] > result["matmul_tflops"]["fp32"] > 0
    if "fraction_of_peak" not in result:
        pytest.skip(f"{result['device_name']} is not in the catalog")
    # Above 1.0 the catalog figure is wrong (e.g. an FP16-accumulate peak where PyTorch accumulates in FP32).
    for key, fraction in result["fraction_of_peak"].items():
        assert 0.2 < fraction <= 1.05, (key, result)


def test_render_lines_prints_a_titled_section_as_text() -> None:
    text = _text(doctor.render_lines, "What this card can run", ["SDXL [1024] px: fits"])
    assert "What this card can run\n  SDXL [1024] px: fits" in text

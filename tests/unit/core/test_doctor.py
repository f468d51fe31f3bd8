import json
import sys
from collections.abc import Callable

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


def test_render_with_a_gpu_and_cpu_torch() -> None:
    report = doctor.report()
    report["gpus"] = [{"index": 0, "name": "NVIDIA GeForce RTX 4070 Ti", "vram_total_gib": 11.99,
                       "vram_free_gib": 11.2, "compute_capability": "8.9", "bf16": True, "driver": "550.54.14",
                       "cuda_driver": "12.4", "cuda_runtime": None, "catalog_key": "rtx-4070-ti"}]
    report["torch"] = {"installed": True, "version": "2.5.1+cpu", "build": "cpu", "cuda_available": False,
                       "mps_available": False, "note": ""}
    text = _text(doctor.render, report)
    assert "NVIDIA GeForce RTX 4070 Ti: 12.0 GiB (11.2 free), compute 8.9, bf16 yes" in text
    assert "catalog rtx-4070-ti" in text
    assert "CUDA build of torch" in text
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


def test_render_bench_shows_fraction_of_peak() -> None:
    result = {"device": "cuda:0", "device_name": "NVIDIA GeForce RTX 4070 Ti", "torch": "2.5.1", "matmul_n": 8192,
              "matmul_tflops": {"fp32": 38.1, "fp16": 70.0, "bf16": 69.5}, "bandwidth_gbs": 460.0,
              "bandwidth_bytes": 512 * MIB, "catalog_key": "rtx-4070-ti",
              "peak": {"fp16_tflops": 80.2, "bf16_tflops": 80.2, "bandwidth_gbs": 504.2},
              "fraction_of_peak": {"fp16": 0.873, "bf16": 0.867, "bandwidth": 0.912}}
    text = _text(doctor.render_bench, result)
    assert "NVIDIA GeForce RTX 4070 Ti" in text
    assert "80.2 TFLOPS" in text and "87%" in text and "91%" in text


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

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pynvml
import pytest

from onecard.core import device
from onecard.core.errors import ConfigError
from onecard.core.extras import available

MIB = 2**20


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVML fails as it does on a machine without the NVIDIA driver, and torch sees no CUDA device."""

    def fail() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", fail)
    monkeypatch.setattr(device, "_torch_cuda_available", lambda: False)


@pytest.fixture
def fake_4070ti(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVML answers as on a desktop with one RTX 4070 Ti (values as nvidia-smi shows them)."""
    calls = {
        "nvmlInit": lambda: None,
        "nvmlShutdown": lambda: None,
        "nvmlSystemGetDriverVersion": lambda: "550.54.14",
        "nvmlSystemGetCudaDriverVersion": lambda: 12040,
        "nvmlDeviceGetCount": lambda: 1,
        "nvmlDeviceGetHandleByIndex": lambda i: f"handle{i}",
        "nvmlDeviceGetName": lambda h: "NVIDIA GeForce RTX 4070 Ti",
        "nvmlDeviceGetMemoryInfo": lambda h: SimpleNamespace(total=12282 * MIB, free=11500 * MIB, used=782 * MIB),
        "nvmlDeviceGetCudaComputeCapability": lambda h: (8, 9),
    }
    for name, fn in calls.items():
        monkeypatch.setattr(pynvml, name, fn)


@pytest.fixture
def no_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch is not installed: find_spec finds nothing, and any `import torch` raises ImportError."""
    monkeypatch.setitem(sys.modules, "torch", None)
    assert not available("torch")


def test_probe_this_machine_is_json_and_complete() -> None:
    report = device.probe()
    json.dumps(report)  # the CLI prints it with --json and run records store it
    assert set(report) >= {"os", "python", "cpu", "ram", "disk", "gpus", "gpu_note", "torch", "accelerators"}
    assert report["cpu"]["logical_cores"] >= 1
    assert report["ram"]["total_gib"] > 0 and report["disk"]["free_gib"] >= 0
    assert set(report["accelerators"]) == {"bitsandbytes", "flash_attn", "xformers", "triton", "onnxruntime",
                                           "tensorrt"}
    torch_info = report["torch"]
    if torch_info["installed"]:
        import torch

        assert torch_info["version"] == torch.__version__
        assert torch_info["cuda_available"] == torch.cuda.is_available()
        if torch.version.cuda is None and torch.version.hip is None:
            assert torch_info["build"] == "cpu"
    if not report["gpus"]:
        assert report["gpu_note"].startswith("no NVIDIA GPU found")


def test_probe_without_gpu_says_why(no_gpu: None) -> None:
    report = device.probe()
    assert report["gpus"] == []
    assert report["gpu_note"] == "no NVIDIA GPU found (NVML: Driver Not Loaded)"
    assert device.local_gpu() is None
    for name in ("bitsandbytes", "flash_attn", "xformers", "tensorrt"):
        assert not report["accelerators"][name]["usable"]


def test_probe_without_nvidia_ml_py(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setattr(device, "_torch_cuda_available", lambda: False)
    found, note = device.gpus()
    assert found == [] and "nvidia-ml-py is not installed" in note


def test_probe_reads_gpus_from_nvml(fake_4070ti: None) -> None:
    (gpu,), note = device.gpus()
    assert note == ""
    assert gpu["name"] == "NVIDIA GeForce RTX 4070 Ti"
    assert gpu["vram_total_gib"] == pytest.approx(11.99, abs=0.01)
    assert gpu["compute_capability"] == "8.9" and gpu["bf16"] is True
    assert gpu["driver"] == "550.54.14" and gpu["cuda_driver"] == "12.4"
    assert gpu["catalog_key"] == "rtx-4070-ti"
    spec = device.local_gpu()
    assert spec is not None and spec.key == "rtx-4070-ti"


def test_unlisted_gpu_becomes_a_custom_card(fake_4070ti: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda h: "NVIDIA RTX 2000 Ada Generation")
    (gpu,), _ = device.gpus()
    assert gpu["catalog_key"] is None
    spec = device.local_gpu()
    assert spec is not None and spec.key.startswith("custom-") and spec.vram_gib == pytest.approx(11.99, abs=0.01)


def test_cpu_torch_with_an_nvidia_gpu_says_to_install_the_cuda_wheel(fake_4070ti: None) -> None:
    report = device.probe()
    if report["torch"]["build"] != "cpu":
        pytest.skip("needs the CPU build of torch")
    assert "CUDA wheel" in report["torch"]["note"]


def test_probe_without_torch_does_not_import_it(no_torch: None, no_gpu: None) -> None:
    report = device.probe()  # any `import torch` here would raise ImportError
    torch_info = report["torch"]
    assert torch_info["installed"] is False and torch_info["version"] is None
    assert torch_info["note"].startswith("torch not installed: install with pip install 'onecard[")
    assert not torch_info["cuda_available"]
    assert device.torch_device() == "cpu"
    assert device.supports_4bit() is False
    assert device.supports_bf16("cuda") is False


def test_probe_without_torch_in_a_fresh_process() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from onecard.core import device\n"
        "r = device.probe()\n"
        "assert r['torch']['installed'] is False, r['torch']\n"
        "assert device.torch_device() == 'cpu'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_importing_device_and_doctor_does_not_import_torch() -> None:
    code = "import sys, onecard.core.device, onecard.core.doctor; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_importing_onecard_asks_cuda_for_lazy_kernel_loading_unless_the_user_chose() -> None:
    # llama.cpp and CTranslate2 on a CUDA runtime before 12.2 would load every kernel at start: onecard's processes
    # load them on first use, as PyTorch's do; a user's own CUDA_MODULE_LOADING stands.
    code = "import os, onecard; print(os.environ['CUDA_MODULE_LOADING'])"
    env = {k: v for k, v in os.environ.items() if k != "CUDA_MODULE_LOADING"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "LAZY"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=env | {"CUDA_MODULE_LOADING": "EAGER"})
    assert out.stdout.strip() == "EAGER"


def test_installed_accelerator_without_cuda_is_not_usable(monkeypatch: pytest.MonkeyPatch, no_gpu: None) -> None:
    # bitsandbytes "installed" (find_spec says yes) on a machine without CUDA: usable is decided without importing.
    monkeypatch.setattr(device, "available", lambda m: m == "bitsandbytes" or available(m))
    state = device.probe()["accelerators"]["bitsandbytes"]
    assert state["installed"] is True and state["usable"] is False
    assert "NVIDIA GPU" in state["note"]


def test_torch_device_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert device.torch_device() == expected


@pytest.mark.parametrize(("capability", "expected"), [((7, 5), False), ((8, 0), True), ((8, 9), True), ((12, 0), True)])
def test_supports_bf16_on_cuda_follows_compute_capability(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], expected: bool
) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: capability)
    monkeypatch.setattr(torch.version, "hip", None)
    assert device.supports_bf16("cuda") is expected
    assert device.supports_bf16("cuda:0") is expected


def test_supports_bf16_without_cuda_is_false(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.supports_bf16("cuda") is False
    assert isinstance(device.supports_bf16("cpu"), bool)


def test_supports_4bit_needs_cuda_and_bitsandbytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "_torch_cuda_available", lambda: False)
    assert device.supports_4bit() is False
    monkeypatch.setattr(device, "_torch_cuda_available", lambda: True)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # not importable
    assert device.supports_4bit() is False


def test_gpu_entries_have_the_documented_fields(fake_4070ti: None) -> None:
    (gpu,) = device.probe()["gpus"]
    assert set(gpu) >= {"index", "name", "vram_total_gib", "vram_free_gib", "compute_capability", "bf16", "driver",
                        "cuda_runtime", "catalog_key"}


def test_broken_torch_install_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch, no_gpu: None) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import fails...
    monkeypatch.setattr(device, "available", lambda m: m == "torch" or available(m))  # ...though it is installed
    torch_info = device.probe()["torch"]
    assert torch_info["installed"] is True and torch_info["build"] is None
    assert torch_info["note"].startswith("torch is installed but import failed: ")


def test_select_device_keeps_an_explicit_device_and_resolves_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "torch_device", lambda: "mps")
    assert device.select_device() == "mps"
    assert device.select_device("auto") == "mps"
    assert device.select_device("cuda:1") == "cuda:1"
    assert device.select_device("cpu") == "cpu"


@pytest.mark.parametrize(("dev", "bf16", "fp16", "expected"), [
    ("cuda", True, True, "bfloat16"),     # Ampere or newer
    ("cuda:1", False, True, "float16"),   # Turing and older: fp16 tensor cores, no native bf16
    ("cuda", False, False, "float32"),    # ... for a caller that cannot use fp16
    ("cpu", True, True, "bfloat16"),      # AVX512-BF16 or AMX
    ("cpu", False, True, "float32"),
    ("mps", True, True, "bfloat16"),      # macOS 14 or newer
    ("mps", False, True, "float32"),
])
def test_select_dtype_auto_is_bf16_where_native_else_fp16_on_cuda_else_fp32(
    monkeypatch: pytest.MonkeyPatch, dev: str, bf16: bool, fp16: bool, expected: str
) -> None:
    asked = []
    monkeypatch.setattr(device, "supports_bf16", lambda d: asked.append(d) or bf16)
    assert device.select_dtype("auto", dev, fp16=fp16) == expected
    assert asked == [dev]


def test_select_dtype_resolves_an_auto_device_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "torch_device", lambda: "cuda")
    monkeypatch.setattr(device, "supports_bf16", lambda d: False)
    assert device.select_dtype("auto", "auto") == "float16"


@pytest.mark.parametrize(("requested", "expected"), [
    ("bf16", "bfloat16"), ("bfloat16", "bfloat16"), ("fp16", "float16"), ("float16", "float16"),
    ("fp32", "float32"), ("float32", "float32"),
])
def test_select_dtype_keeps_an_explicit_dtype_whatever_the_device(requested: str, expected: str) -> None:
    assert device.select_dtype(requested, "cpu") == expected
    assert device.select_dtype(requested, "cpu", fp16=False) == expected


def test_select_dtype_names_a_torch_dtype() -> None:
    torch = pytest.importorskip("torch")
    assert isinstance(getattr(torch, device.select_dtype("auto", "cpu")), torch.dtype)


def test_select_dtype_rejects_an_unknown_name_with_the_choices() -> None:
    with pytest.raises(ConfigError) as e:
        device.select_dtype("int3", "cpu")
    assert "int3" in str(e.value) and "bf16" in str(e.value)


@pytest.mark.skipif(not device._no_gpu_device_nodes(), reason="this machine has a GPU device node")
def test_the_probe_does_not_import_torch_where_no_gpu_driver_exists() -> None:
    code = "import sys; from onecard.core import device; device.gpus(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

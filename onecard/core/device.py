"""What this machine has (OS, CPU, RAM, disk, GPUs, torch, accelerator libraries) and which device to run on.

`probe()` must answer on a laptop with no torch and no GPU: torch is imported only when it is installed, the
accelerator libraries only when their answer needs it, and every failure becomes a sentence in the report.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

from onecard.core.errors import ConfigError
from onecard.core.extras import available
from onecard.core.gpus import GpuSpec, custom, lookup, match_detected
from onecard.core.paths import data_dir

__all__ = ["probe", "gpus", "local_gpu", "select_device", "select_dtype", "torch_device", "supports_bf16",
           "supports_4bit", "cpu_has_vnni"]

GIB = 2**30
TORCH_HINT = (
    "install with pip install 'onecard[tinylm]' (torch alone) or the extra of the project you want, e.g. "
    "'onecard[tune]'; with an NVIDIA GPU take the CUDA wheel from https://pytorch.org/get-started/locally/"
)

# import name -> (distribution names to ask importlib.metadata for the version, what it needs to be usable)
_ACCELERATORS: dict[str, tuple[tuple[str, ...], str]] = {
    "bitsandbytes": (("bitsandbytes",), "cuda"),
    "flash_attn": (("flash-attn",), "ampere"),
    "xformers": (("xformers",), "cuda"),
    "triton": (("triton", "pytorch-triton", "pytorch-triton-rocm"), "gpu"),
    "onnxruntime": (("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-silicon"), "any"),
    "tensorrt": (("tensorrt", "tensorrt-cu12", "tensorrt-cu11"), "cuda"),
}


def probe() -> dict[str, Any]:
    """Describe this machine as a JSON-serialisable dict: os, python, cpu, ram, disk, gpus, torch, accelerators."""
    import psutil

    vm = psutil.virtual_memory()
    disk_path = _existing(data_dir())
    gpu_list, gpu_note = gpus()
    torch_info = _torch_info(nvidia_gpu=bool(gpu_list))
    return {
        "os": {"platform": platform.platform(), "system": platform.system(), "release": platform.release()},
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "cpu": {
            "model": _cpu_model(),
            "physical_cores": psutil.cpu_count(logical=False),
            "logical_cores": psutil.cpu_count(logical=True),
        },
        "ram": {"total_gib": round(vm.total / GIB, 1), "available_gib": round(vm.available / GIB, 1)},
        "disk": {"path": str(disk_path), "free_gib": round(psutil.disk_usage(str(disk_path)).free / GIB, 1)},
        "gpus": gpu_list,
        "gpu_note": gpu_note,
        "torch": torch_info,
        "accelerators": _accelerators(torch_info, gpu_list),
    }


def gpus() -> tuple[list[dict[str, Any]], str]:
    """The NVIDIA GPUs, via NVML (no torch needed), else via torch.cuda; and a note saying why when there are none."""
    found, note = _nvml_gpus()
    if found:
        return found, ""
    if _torch_cuda_available():
        return _torch_gpus(), ""
    return [], note


def local_gpu() -> GpuSpec | None:
    """The catalog entry of GPU 0, a custom entry from its memory size when it is not listed, or None without a GPU."""
    found, _ = gpus()
    if not found:
        return None
    gpu = found[0]
    return lookup(gpu["catalog_key"]) if gpu["catalog_key"] else custom(gpu["vram_total_gib"])


def select_device(requested: str = "auto") -> str:
    """The device a job runs on: `requested` as given ("cuda:1", "cpu", ...), or for "auto" `torch_device()`."""
    return torch_device() if requested == "auto" else requested


Dtype = Literal["bfloat16", "float16", "float32"]
_DTYPE_NAMES: dict[str, Dtype] = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
                                  "fp32": "float32", "float32": "float32"}


def select_dtype(requested: str, device: str, *, fp16: bool = True) -> Dtype:
    """The compute dtype, as torch names it (`getattr(torch, name)`): `requested` ("bf16", "float32", ...), or for
    "auto" bfloat16 where `device` runs it natively (`supports_bf16`), else float16 on CUDA, else float32.

    `fp16=False` is for a caller that cannot use float16 (training without loss scaling): float32 instead.
    """
    if requested != "auto":
        if requested not in _DTYPE_NAMES:
            raise ConfigError(f"unknown dtype {requested!r}", f"use auto or one of {', '.join(_DTYPE_NAMES)}")
        return _DTYPE_NAMES[requested]
    device = select_device(device)
    if supports_bf16(device):
        return "bfloat16"
    return "float16" if fp16 and device.split(":")[0] == "cuda" else "float32"


def torch_device() -> str:
    """The device to run on: "cuda" when available, else "mps", else "cpu" (also when torch is not installed)."""
    if not available("torch"):
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def supports_bf16(device: str) -> bool:
    """Whether `device` runs bfloat16 natively, not emulated.

    CUDA: compute capability 8.0 or newer (torch's `is_bf16_supported()` also says yes on older cards, by
    emulation, which is slow). MPS: macOS 14 or newer. CPU: the AVX512-BF16 or AMX instructions are present.
    """
    kind = str(device).split(":")[0]
    if kind == "cpu":
        return _cpu_has_bf16()
    if not available("torch"):
        return False
    import torch

    if kind == "cuda":
        if not torch.cuda.is_available():
            return False
        if torch.version.hip:
            return bool(torch.cuda.is_bf16_supported())
        return torch.cuda.get_device_capability(torch.device(device)) >= (8, 0)
    if kind == "mps":
        return torch.backends.mps.is_available() and torch.backends.mps.is_macos_or_newer(14, 0)
    return False


def supports_4bit() -> bool:
    """Whether bitsandbytes 4-bit layers can run here: a CUDA device and an importable bitsandbytes."""
    return _torch_cuda_available() and _try_import("bitsandbytes") is None


# --- probe parts -------------------------------------------------------------------------------------------------


def _existing(path: Path) -> Path:
    # The data directory may not exist yet on a fresh install; its nearest parent is on the same disk.
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _cpu_model() -> str:
    if sys.platform.startswith("linux"):
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
    elif sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except OSError:
            pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_has_vnni() -> bool:
    """Whether the CPU has an int8 dot-product instruction (AVX512-VNNI, AVX-VNNI or AMX-INT8): int8 matrix products
    without the 16-bit saturation of plain AVX2's (ONNX Runtime's quantization guide)."""
    return _cpu_has(" avx512_vnni", " avx_vnni", " amx_int8")


def _cpu_has_bf16() -> bool:
    return _cpu_has(" avx512_bf16", " amx_bf16")


def _cpu_has(*flags: str) -> bool:
    # Only Linux exposes the flags without extra tools; elsewhere report the safe answer.
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in text for f in flags)


def _version(*dists: str) -> str | None:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _try_import(module: str) -> str | None:
    """Import `module`; None when it worked, else the error as a sentence."""
    try:
        importlib.import_module(module)
    except Exception as e:  # a broken install raises anything from OSError to RuntimeError at import
        return f"import failed: {type(e).__name__}: {e}".splitlines()[0]
    return None


def _no_gpu_device_nodes() -> bool:
    """True on Linux when no GPU driver exposes a device node (NVIDIA, ROCm, WSL2): CUDA cannot be there, so the
    probe skips importing torch (about 2 s and 150 MB on every command's run record)."""
    if not sys.platform.startswith("linux"):
        return False
    dev = Path("/dev")
    return not (any(dev.glob("nvidia[0-9]*")) or (dev / "kfd").exists() or (dev / "dxg").exists())


def _torch_cuda_available() -> bool:
    if "torch" not in sys.modules and _no_gpu_device_nodes():
        return False
    if not available("torch") or _try_import("torch"):  # a broken torch install must not break the probe
        return False
    import torch

    return bool(torch.cuda.is_available())


def _torch_info(nvidia_gpu: bool) -> dict[str, Any]:
    if not available("torch"):
        return {"installed": False, "version": None, "build": None, "cuda_available": False,
                "mps_available": False, "note": f"torch not installed: {TORCH_HINT}"}
    error = _try_import("torch")
    if error:
        return {"installed": True, "version": _version("torch"), "build": None, "cuda_available": False,
                "mps_available": False, "note": f"torch is installed but {error}"}
    import torch

    build = f"cuda {torch.version.cuda}" if torch.version.cuda else "rocm" if torch.version.hip else "cpu"
    cuda = bool(torch.cuda.is_available())
    mps = bool(torch.backends.mps.is_available())
    note = ""
    if build == "cpu" and nvidia_gpu:
        note = "CPU-only build of torch, but an NVIDIA GPU is present: reinstall torch with the CUDA wheel from "
        note += "https://pytorch.org/get-started/locally/"
    elif build != "cpu" and not cuda:
        note = f"torch {build} build, but no GPU is visible to it (driver missing or CUDA_VISIBLE_DEVICES empty?)"
    return {"installed": True, "version": torch.__version__, "build": build, "cuda_available": cuda,
            "mps_available": mps, "note": note}


def _nvml_gpus() -> tuple[list[dict[str, Any]], str]:
    try:
        import pynvml
    except ImportError:
        return [], "no NVIDIA GPU found (nvidia-ml-py is not installed, so NVML could not be asked)"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return [], f"no NVIDIA GPU found (NVML: {e})"
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        cuda_driver = pynvml.nvmlSystemGetCudaDriverVersion()  # e.g. 12040: the newest CUDA the driver runs
        runtime = _cuda_runtime()
        found = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            cc = tuple(pynvml.nvmlDeviceGetCudaComputeCapability(handle))
            found.append(_gpu_entry(i, pynvml.nvmlDeviceGetName(handle), int(mem.total), int(mem.free), cc,
                                    driver, f"{cuda_driver // 1000}.{cuda_driver % 1000 // 10}", runtime))
    except pynvml.NVMLError as e:
        return [], f"no NVIDIA GPU found (NVML: {e})"
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
    return found, "" if found else "no NVIDIA GPU found (NVML sees 0 devices)"


def _torch_gpus() -> list[dict[str, Any]]:
    import torch

    found = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)
        found.append(_gpu_entry(i, props.name, int(total), int(free), (props.major, props.minor),
                                None, None, _cuda_runtime()))
    return found


def _cuda_runtime() -> str | None:
    # The CUDA runtime is the one torch was built with; only ask when torch is already importable.
    if not available("torch") or _try_import("torch"):
        return None
    import torch

    return torch.version.cuda


def _gpu_entry(index: int, name: str, total: int, free: int, cc: tuple[int, ...], driver: str | None,
               cuda_driver: str | None, cuda_runtime: str | None) -> dict[str, Any]:
    spec = match_detected(name, total)
    return {
        "index": index,
        "name": name,
        "vram_total_gib": round(total / GIB, 2),
        "vram_free_gib": round(free / GIB, 2),
        "compute_capability": f"{cc[0]}.{cc[1]}",
        "bf16": tuple(cc) >= (8, 0),
        "driver": driver,
        "cuda_driver": cuda_driver,
        "cuda_runtime": cuda_runtime,
        "catalog_key": spec.key if spec else None,
    }


def _accelerators(torch_info: dict[str, Any], gpu_list: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    cuda = bool(torch_info["cuda_available"]) and (torch_info["build"] or "").startswith("cuda")
    gpu = bool(torch_info["cuda_available"])  # CUDA or ROCm
    ampere = cuda and bool(gpu_list) and all(g["bf16"] for g in gpu_list)
    report = {}
    for module, (dists, needs) in _ACCELERATORS.items():
        if not available(module):
            report[module] = {"installed": False, "version": None, "usable": False, "note": "not installed"}
            continue
        version = _version(*dists)
        if needs == "cuda" and not cuda:
            usable, note = False, "installed, but needs an NVIDIA GPU with a CUDA build of torch"
        elif needs == "ampere" and not ampere:
            usable, note = False, "installed, but needs an Ampere or newer NVIDIA GPU (compute capability 8.0+)"
        elif needs == "gpu" and not gpu:
            usable, note = False, "installed, but its kernels need a GPU visible to torch"
        elif needs == "gpu":
            usable, note = True, ""  # triton compiles at first use; importing it here would only cost time
        else:
            error = _try_import(module)
            usable, note = error is None, error or ""
            if module == "onnxruntime" and usable:
                providers = importlib.import_module("onnxruntime").get_available_providers()
                note = "providers: " + ", ".join(providers)
        report[module] = {"installed": True, "version": version, "usable": usable, "note": note}
    return report


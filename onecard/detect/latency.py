"""Export a trained detector with ultralytics' exporter, run each format on its own runtime, and time it.

Formats: `pytorch` (the .pt, fused Conv+BN, eval, inference mode), `torchscript`, `onnx` (ONNX Runtime), `openvino`
and `engine` (TensorRT, CUDA only). Each export has a fixed input shape (batch x 3 x imgsz x imgsz), as ultralytics
writes them by default; a fixed shape lets ONNX Runtime and TensorRT plan every kernel ahead.

Latency is the model alone (a fixed input from host memory, the first output back to host memory; no decoding,
letterboxing or NMS, which are the same for every format): `warmup` untimed runs (allocation, kernel choice, thread
pool), then `repeats` timed ones; median and 90th percentile. On a CPU every runtime gets the same number of threads
(default: the physical cores, ONNX Runtime's own default): ultralytics sets torch to cores - 1 threads when it picks a
device (`select_device`), so leaving each side at its default compares 1 thread against 2 on a 2-core machine.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["FORMATS", "SUFFIX", "physical_cores", "missing_runtime", "export", "runner", "time_runs", "latency"]

FORMATS = ("pytorch", "torchscript", "onnx", "openvino", "engine")
RUNTIMES = {"onnx": ("onnxruntime", "pip install 'onecard[detect]'"), "openvino": ("openvino", "pip install openvino"),
            "engine": ("tensorrt", "pip install tensorrt (on a machine with a CUDA GPU)")}
SUFFIX = {"torchscript": ".torchscript", "onnx": ".onnx", "openvino": "_openvino_model", "engine": ".engine"}


def physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def missing_runtime(fmt: str, device: str) -> str | None:
    """Why `fmt` cannot run here (its runtime is not installed, or TensorRT without CUDA), or None."""
    if fmt == "engine" and not device.startswith("cuda"):
        return f"TensorRT runs on a CUDA GPU only (device: {device})"
    if fmt in RUNTIMES and importlib.util.find_spec(RUNTIMES[fmt][0]) is None:
        return f"{RUNTIMES[fmt][0]} is not installed ({RUNTIMES[fmt][1]})"
    if fmt == "onnx" and device.startswith("cuda"):
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)"
    if fmt == "openvino" and device.startswith("cuda"):
        return "OpenVINO runs on Intel devices, not CUDA (time it with --device cpu)"
    return None


def export(weights: str, fmt: str, imgsz: int, batch: int = 1, device: str = "cpu", out: Path | None = None) -> Path:
    """The exported file (an OpenVINO folder): beside the weights by ultralytics' naming (best.onnx...), or `out`.

    With `out`, a copy of the weights is exported in `out`'s folder, so that a file exported earlier beside the
    weights (and recorded) is not overwritten."""
    from onecard.detect.ultra import torch_device_arg, yolo

    if fmt == "pytorch":
        return Path(weights)
    # fp32 (ultralytics' default precision) for every format, so that each computes what the .pt does; ONNX-based
    # exports with simplify=False: onnxslim is not a dependency, and ultralytics would try to pip-install it
    extra = {"simplify": False} if fmt in ("onnx", "engine") else {}
    source = weights
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        source = str(out.parent / f"{out.name.removesuffix(SUFFIX[fmt])}.pt")
        shutil.copyfile(weights, source)
    try:
        path = Path(yolo(source).export(format=fmt, imgsz=imgsz, batch=batch, device=torch_device_arg(device),
                                        verbose=False, **extra))
    finally:
        if source != weights:
            Path(source).unlink()
    if out is None or path == out:
        return path
    if out.is_dir():
        shutil.rmtree(out)
    shutil.move(path, out)
    return out


def runner(path: Path, fmt: str, device: str = "cpu", threads: int | None = None) -> Callable[[Any], Any]:
    """A function from an input batch (numpy float32, B x 3 x H x W) to the model's first output (numpy)."""
    import numpy as np

    threads = threads or physical_cores()
    if fmt in ("pytorch", "torchscript", "engine"):
        import torch

        torch.set_num_threads(threads)
        if fmt == "pytorch":
            from onecard.detect.ultra import yolo

            model = yolo(str(path)).model.fuse().eval().to(device)
        elif fmt == "torchscript":
            model = torch.jit.load(str(path), map_location=device).eval()  # type: ignore[no-untyped-call]
        else:
            from ultralytics.nn.autobackend import AutoBackend

            model = AutoBackend(str(path), device=torch.device(device))  # its TensorRT bindings and CUDA stream

        def run_torch(x: Any) -> Any:
            with torch.inference_mode():
                y = model(torch.from_numpy(x).to(device))
            y = y[0] if isinstance(y, list | tuple) else y
            return y.float().cpu().numpy()

        return run_torch
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # one chain of convolutions: no branches to overlap
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # incl. NCHWc conv layouts
        providers = ["CUDAExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
        session = ort.InferenceSession(str(path), options, providers=providers)
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    if fmt == "openvino":
        import openvino as ov

        xml = next(Path(path).glob("*.xml"))
        # f32: on a CPU with bf16 (AVX512-BF16, AMX) OpenVINO computes in bf16 unless told otherwise
        compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                            "PERFORMANCE_HINT": "LATENCY",
                                                            "INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()
        return lambda x: np.asarray(request.infer({0: x})[compiled.output(0)])
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


def time_runs(fn: Callable[[], Any], warmup: int, repeats: int) -> dict[str, float]:
    """Median and p90 milliseconds of `fn()` over `repeats` runs after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    ms = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - start) * 1000)
    ms.sort()
    return {"median_ms": statistics.median(ms), "p90_ms": ms[min(len(ms) - 1, int(0.9 * len(ms)))],
            "repeats": repeats}


def latency(path: Path | str, fmt: str, imgsz: int, batch: int = 1, device: str = "cpu", threads: int | None = None,
            warmup: int = 5, repeats: int = 30) -> dict[str, float]:
    """ms per image (median, p90 of whole batches divided by `batch`) and images per second of one format."""
    import numpy as np

    fn = runner(Path(path), fmt, device, threads)
    x = np.random.default_rng(0).random((batch, 3, imgsz, imgsz), dtype=np.float32)
    t = time_runs(lambda: fn(x), warmup, repeats)
    per_image = {k: t[k] / batch for k in ("median_ms", "p90_ms")}
    return {**per_image, "images_per_s": 1000 / per_image["median_ms"], "batch": batch,
            "threads": threads or physical_cores(), "repeats": repeats}

"""Export a trained detector (ONNX, TorchScript) with ultralytics' exporter, and measure its latency per image.

Latency is the model alone at batch 1 (a fixed 1 x 3 x imgsz x imgsz input; no decoding, letterboxing or NMS, which
are the same for every format): `warmup` untimed runs (allocation, kernel choice, thread pool), then `repeats` timed
ones; the median and the 90th percentile in milliseconds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["export", "time_runs", "torch_latency", "onnx_latency"]


def export(weights: str, fmt: str, imgsz: int) -> Path:
    """The exported file, beside the weights (ultralytics' naming: best.onnx, best.torchscript)."""
    from onecard.detect.ultra import yolo


    # simplify=False: onnxslim is not a dependency, and ultralytics would try to pip-install it
    return Path(yolo(weights).export(format=fmt, imgsz=imgsz, simplify=False, dynamic=False, verbose=False))


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


def torch_latency(weights: str, imgsz: int, device: str = "cpu", warmup: int = 5,
                  repeats: int = 30) -> dict[str, float]:
    """ms per image of the PyTorch model (fused Conv+BN, eval, fp32), as ultralytics' predictor runs it."""
    import torch

    from onecard.detect.ultra import yolo

    model = yolo(weights).model.fuse().eval().to(device)
    x = torch.rand(1, 3, imgsz, imgsz, device=device)

    def run() -> None:
        with torch.inference_mode():
            model(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return time_runs(run, warmup, repeats)


def onnx_latency(path: Path, imgsz: int, warmup: int = 5, repeats: int = 30) -> dict[str, float]:
    """ms per image of the ONNX file under ONNX Runtime's CPU provider."""
    import numpy as np

    from onecard.core.extras import require

    ort = require("onnxruntime", "detect")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    return time_runs(lambda: session.run(None, {name: x}), warmup, repeats)

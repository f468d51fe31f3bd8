"""What a small YOLO training run reserves beyond its step's tensors, on a CUDA GPU (a device check; not run yet).

    python benchmarks/fit_yolo_floor_gpu.py [cls|det]
    CUBLAS_WORKSPACE_CONFIG=:0:0 python benchmarks/fit_yolo_floor_gpu.py cls   # without cuBLAS workspaces
    CUDNN_CONV_WSCAP_DBG=8 python benchmarks/fit_yolo_floor_gpu.py cls         # cuDNN workspaces capped at 8 MiB

Public ultralytics logs of small jobs (YOLOv8n/s/m-cls at 64-224 px, a YOLOv8s detect at batch 1) read 0.2-0.45 GiB
more `GPU_mem` (memory_reserved) than the planner's step tensors, while larger jobs match (benchmarks/RESULTS.md,
stop 28). From source (a helper's research, RESULTS): ultralytics' AMP check (utils/checks.py check_amp) runs a
detection model on the GPU before training and leaves its cache reserved, which a larger step reuses (a floor, not
an addition); `deterministic=True` sets CUBLAS_WORKSPACE_CONFIG=:4096:8, a 32 MiB cuBLAS workspace per handle, kept
for the process; cuDNN's convolution workspaces come through the caching allocator with no cap under benchmark off.
This script replays those phases as ultralytics 8.4 runs them (the AMP check on yolo26n built from its yaml, then
three AMP training steps with AdamW, GradScaler and an EMA copy), prints reserved and allocated memory after each,
and the largest allocation of each origin (cuDNN, cuBLAS, other) from the allocator's memory history. Run it with the
two variables above to separate the terms. Needs ultralytics (`pip install 'onecard[detect]'`) and a CUDA GPU.
"""

from __future__ import annotations

import argparse
import copy
import os
from typing import Any

MIB = 2**20


def show(torch: Any, tag: str) -> None:
    reserved, allocated = torch.cuda.memory_reserved() / MIB, torch.cuda.memory_allocated() / MIB
    print(f"{tag:28} reserved {reserved:8.1f} MiB  allocated {allocated:8.1f} MiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", nargs="?", default="cls", choices=("cls", "det"),
                        help="cls: YOLOv8n-cls batch 16 at 224 px; det: YOLOv8s detect batch 1 at 640 px")
    args = parser.parse_args()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # ultralytics init_seeds(deterministic=True)
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import ClassificationModel, DetectionModel
    from ultralytics.utils import ASSETS, DEFAULT_CFG

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible to torch: this is a device check")
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    torch.cuda.memory._record_memory_history(max_entries=200_000)
    cls = args.task == "cls"
    model = (ClassificationModel("yolov8n-cls.yaml", nc=10, verbose=False) if cls
             else DetectionModel("yolov8s.yaml", nc=80, verbose=False)).cuda().train()
    model.args = copy.copy(DEFAULT_CFG)
    show(torch, "model on the GPU")
    amp = YOLO("yolo26n.yaml")  # check_amp: 8 bus.jpg at 256 px, fp32 then under autocast
    amp([ASSETS / "bus.jpg"] * 8, imgsz=256, device=0, verbose=False)
    with torch.autocast("cuda"):
        amp([ASSETS / "bus.jpg"] * 8, imgsz=256, device=0, verbose=False)
    del amp
    show(torch, "after the AMP check")
    ema = copy.deepcopy(model).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    batch, size = (16, 224) if cls else (1, 640)
    for step in range(3):
        img = torch.rand(batch, 3, size, size, device="cuda")
        data = {"img": img, "cls": torch.randint(0, 10, (batch,), device="cuda")} if cls else {
            "img": img, "cls": torch.randint(0, 80, (6 * batch, 1), device="cuda").float(),
            "bboxes": torch.rand(6 * batch, 4, device="cuda") * 0.5 + 0.25,
            "batch_idx": torch.arange(batch, device="cuda").repeat_interleave(6).float()}
        with torch.autocast("cuda"):
            loss, _ = model(data)
        scaler.scale(loss.sum()).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
        with torch.no_grad():
            for e, p in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
                if e.dtype.is_floating_point:
                    e.mul_(0.999).add_(p.detach(), alpha=0.001)
        show(torch, f"after training step {step}")
    largest: dict[str, int] = {}
    for trace in torch.cuda.memory._snapshot()["device_traces"][0]:
        if trace["action"] != "alloc":
            continue
        frames = " ".join(f.get("name", "") + f.get("filename", "") for f in trace.get("frames", [])).lower()
        origin = "cudnn" if "cudnn" in frames else "cublas" if "cublas" in frames or "blas" in frames else "other"
        largest[origin] = max(largest.get(origin, 0), trace["size"])
    print("largest single allocation by origin (MiB):", {k: round(v / MIB, 1) for k, v in sorted(largest.items())})


if __name__ == "__main__":
    main()

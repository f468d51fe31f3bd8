"""Check onecard/fit/yolo.py's walk against ultralytics' own model: parameters, and one training step's tensors.

    python benchmarks/fit_yolo_trace.py [--models yolov8n yolov8s-seg] [--batch 8] [--imgsz 704] [--objects 8]

For each model: builds it from ultralytics' yaml (random weights), counts its parameters beside the walk's, and runs
one training step on the CPU as the trainer takes it (forward under 16-bit autocast, the v8 loss with its target
assignment, backward) on synthetic images with `--objects` boxes each, under onecard.fit.trace's live-storage
counter. It prints the traced peak of the step's tensors beside the estimator's weights + activations (these
figures were taken before fit counted the loss: the walk column now holds it too). bf16 autocast
stands in for CUDA's fp16 (same bytes). Needs ultralytics (`pip install 'onecard[detect]'`).

ultralytics 8.4.190, torch 2.13 (CPU): all 20 detect/seg/pose/cls parameter counts equal the walk's. Step tensors
(traced / walk, GiB): yolov8n b8 704 1.056 / 1.046 (1.072 with 100 objects per image: since 8.4.134 the target
assignment takes only the pairs inside a box; before it, it grows with the labels: benchmarks/fit_yolo_loss.py);
yolov8s b4 640 0.807 / 0.806; yolov8s-seg b4 640 0.999 / 0.956 (the mask loss, not walked); at 320 px b8 yolov8n-cls
0.131 / 0.146, yolov8n-pose 0.217 / 0.232.
"""

from __future__ import annotations

import argparse

from onecard.core.extras import require
from onecard.fit import measure_jobs, yolo
from onecard.fit.estimate import GIB
from onecard.fit.job import FitJob
from onecard.fit.trace import _dispatch_mode, _LiveBytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["yolov8n", "yolov8n-seg", "yolov8n-pose", "yolov8n-cls"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--objects", type=int, default=8, help="boxes in every image")
    args = parser.parse_args()
    torch = require("torch", "detect")
    require("ultralytics", "detect")
    from ultralytics.cfg import get_cfg
    from ultralytics.nn import tasks

    measure_jobs.DEVICE = "cpu"
    classes = {"detect": tasks.DetectionModel, "segment": tasks.SegmentationModel, "pose": tasks.PoseModel,
               "classify": tasks.ClassificationModel}
    print(f"{'model':14} {'params':>11} {'walk':>11} {'step GiB':>9} {'walk GiB':>9}")
    for key in args.models:
        arch = yolo.CATALOG[key]
        nc = yolo.DEFAULT_NC[arch.task]
        model = classes[arch.task](f"{key}.yaml", nc=nc, verbose=False)
        model.args = get_cfg()
        model.train()
        counter = _LiveBytes()
        for t in [*model.parameters(), *model.buffers()]:
            counter.add(t, "weights")
        batch = measure_jobs._yolo_batch(arch.task, [args.objects] * args.batch, args.imgsz, nc, torch)
        with _dispatch_mode(counter):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss, _ = model(batch)
            loss.sum().backward()
        est = yolo.estimate(arch, FitJob(model=key, job="train", batch=args.batch, imgsz=args.imgsz,
                                        labels_per_image=args.objects, max_labels=args.objects), None)
        walked = est.parts["activations"] + sum(p.numel() for p in model.parameters()) * 4 / GIB
        print(f"{key:14} {sum(p.numel() for p in model.parameters()):11,} {yolo.param_count(arch):11,} "
              f"{counter.peak / GIB:9.3f} {walked:9.3f}")


if __name__ == "__main__":
    main()

"""How much memory ultralytics' YOLOv8 training loss takes as the labels per image grow, measured on the CPU.

    python benchmarks/fit_yolo_loss.py [--task detect segment] [--batch 8] [--imgsz 704] [--labels 8 32 64 128]
                                       [--model yolov8n] [--ultralytics DIR]

The loss runs after the forward pass, while every activation autograd keeps is still alive, so what it holds at its
own peak comes on top of the walk's activations. Its target assignment (utils/tal.py TaskAlignedAssigner) pads the
labels of each image to the most labels in any image of the batch (the loss's `preprocess`: counts.max()) and builds
(batch, max_labels, anchors) tensors; the segmentation loss adds, for every image, (positive anchors, H/4, W/4) mask
tensors that autograd keeps until backward. This script measures both with ultralytics' own loss.

For each label count N it builds the model from ultralytics' yaml (random weights), runs one forward in train mode
under 16-bit autocast (bf16 on the CPU: the same bytes as CUDA's fp16) without grad, turns the head outputs into
leaf tensors, and runs the loss (with N boxes in every image, centres in the middle half, sides 5-30% of the image,
as onecard.fit.measure_jobs draws them) and its backward under onecard.fit.trace's live-storage counter. It prints
the loss's peak above its inputs, and the slope per (image x label x anchor) that onecard/fit/yolo.py uses.

`--step` runs whole training steps instead (forward, loss, backward on the model) beside AutoBatch's profile step
(forward, sum of the outputs, backward: no loss), and prints the difference next to onecard.fit.yolo.loss_bytes.

`--ultralytics DIR` measures another release: DIR holds its unpacked wheel (`pip download ultralytics==8.0.114
--no-deps` and unzip). Releases of 2023 import pkg_resources and IPython at import time without using them in the
loss; stand-ins are put in their place when they are missing.

2026-12-07, torch 2.14 CPU, `--step`, MiB the loss adds to the step (tests/unit/fit/test_yolo.py holds fit to them):
yolov8n b8 704 nc 80 with 8 / 64 / 128 labels: 8.4.190 122.3 / 122.4 / -; 8.0.114, 8.3.0 153.7 / 205.9 / 330.2
(8.0.75: 330.2 at 128); 8.0.35 153.7 / 528.8 / 1045.0 (nc 1: 8.4.190 11.4, 8.0.114 26.6 / - / 324.4;
nc 20: 34.9, 51.6 / - / 325.8).
yolov8s b16 640 nc 80, 8 labels, 8.4.190: 193.2. yolov8s-seg b16 640 with 4 / 16 labels: 8.4.190 157.6 / 526.7
(1 label: 157.6); 8.0.35 284.3 / 712.7; 8.0.114 284.3 / 717.6; 8.3.0 290.7 / 717.8. yolov8s-pose b16 640 nc 1 with
8 / 32 / 64 / 128 labels, 8.4.190: 12.2 / 58.5 / 120.0 / 243.7; yolov8n-pose b8 704 with 8 / 64: 19.3 / 84.7.
The label slopes without --step (the loss alone), yolov8n b8 704: 8.0.35 104 B, 8.0.114 32 B (between 128 and 192
labels) per (image x label x anchor); 8.4.190 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import types
from typing import Any

from onecard.fit import yolo
from onecard.fit.job import FitJob
from onecard.fit.trace import _dispatch_mode, _LiveBytes

MIB = 2**20


def _import_ultralytics(root: str | None) -> Any:
    if root:
        sys.path.insert(0, root)
        # an old release rewrites its settings file; keep it away from the installed release's
        os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp())
        for name in ("pkg_resources", "IPython"):
            try:
                __import__(name)
            except ImportError:
                stub = types.ModuleType(name)
                stub.parse_version = __import__("packaging.version").version.parse  # type: ignore[attr-defined]
                stub.require = lambda *a, **k: []  # type: ignore[attr-defined]
                stub.display = types.ModuleType("IPython.display")  # type: ignore[attr-defined]
                sys.modules[name] = stub
    import ultralytics

    return ultralytics


def _model_and_loss(ul: Any, task: str, key: str, nc: int) -> tuple[Any, Any]:
    from ultralytics.nn import tasks

    cls = {"detect": tasks.DetectionModel, "segment": tasks.SegmentationModel, "pose": tasks.PoseModel}[task]
    model = cls(f"{key}{ {'detect': '', 'segment': '-seg', 'pose': '-pose'}[task] }.yaml", nc=nc, verbose=False)
    try:  # 8.1 and later
        from ultralytics.cfg import get_cfg
        from ultralytics.utils import DEFAULT_CFG
    except ImportError:  # 8.0.x
        from ultralytics.yolo.cfg import get_cfg
        from ultralytics.yolo.utils import DEFAULT_CFG
    model.args = get_cfg(DEFAULT_CFG)
    if hasattr(model, "init_criterion"):  # 8.0.1xx and later: the model builds its loss
        return model, model.init_criterion()
    if task == "segment":  # early 8.0.x: the loss lives in the trainer module
        from ultralytics.yolo.v8.segment.train import SegLoss

        return model, SegLoss(model, overlap=model.args.overlap_mask)
    from ultralytics.yolo.v8.detect.train import Loss

    return model, Loss(model)


def _batch(task: str, b: int, size: int, n: int, nc: int, torch: Any) -> dict[str, Any]:
    """A batch as ultralytics' dataloader collates it: n normalised xywh boxes per image, overlap masks at H/4."""
    g = torch.Generator().manual_seed(0)
    xy, wh = torch.rand(b * n, 2, generator=g) * 0.5 + 0.25, torch.rand(b * n, 2, generator=g) * 0.25 + 0.05
    batch = {"img": torch.rand(b, 3, size, size, generator=g),
             "cls": torch.randint(0, nc, (b * n, 1), generator=g).float(),
             "batch_idx": torch.arange(b).repeat_interleave(n).float(), "bboxes": torch.cat([xy, wh], 1)}
    if task == "segment":  # overlap_mask=True (the default): one (H/4, W/4) map per image holding each object's index
        batch["masks"] = torch.randint(0, n + 1, (b, size // 4, size // 4), generator=g).float()
    if task == "pose":  # COCO's 17 keypoints, all visible, inside the image
        batch["keypoints"] = torch.cat([torch.rand(b * n, 17, 2, generator=g), torch.ones(b * n, 17, 1)], 2)
    return batch


def measure(ul: Any, task: str, key: str, b: int, size: int, labels: list[int], nc: int) -> list[dict[str, float]]:
    """The loss's peak bytes above its inputs (forward and backward) for each label count."""
    import torch
    from torch.utils._pytree import tree_map

    model, crit = _model_and_loss(ul, task, key, nc)
    model.train()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        preds = model(torch.rand(b, 3, size, size))
    anchors = sum((size // s) ** 2 for s in (8, 16, 32))
    rows = []
    for n in labels:
        batch = _batch(task, b, size, n, nc, torch)
        leaves = tree_map(lambda t: t.detach().clone().requires_grad_(t.is_floating_point())
                          if isinstance(t, torch.Tensor) else t, preds)
        counter = _LiveBytes()
        for t in [*model.parameters(), *model.buffers()]:
            counter.add(t, "weights")
        for t in [*batch.values(), *torch.utils._pytree.tree_leaves(leaves)]:
            if isinstance(t, torch.Tensor):
                counter.add(t, "weights")  # the inputs: counted, then left out of the loss's own figure
        base = sum(counter.live.values())
        counter.peak = base
        with _dispatch_mode(counter):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = crit(leaves, batch)[0]
            fwd_peak, kept = counter.peak - base, sum(counter.live.values()) - base
            loss.sum().backward()
        rows.append({"labels": n, "anchors": anchors, "forward_mib": fwd_peak / MIB, "kept_mib": kept / MIB,
                     "peak_mib": (counter.peak - base) / MIB})
        del loss, leaves
    return rows


def step(ul: Any, task: str, key: str, b: int, size: int, labels: list[int], nc: int) -> list[dict[str, float]]:
    """Whole training steps (forward, loss, backward) beside AutoBatch's profile step (forward, sum, backward)."""
    import torch
    from torch.utils._pytree import tree_leaves

    model, crit = _model_and_loss(ul, task, key, nc)
    model.train()
    rows = []
    for n in [0, *labels]:  # 0: the profile step without the loss
        batch = _batch(task, b, size, max(n, 1), nc, torch)
        counter = _LiveBytes()
        for t in [*model.parameters(), *model.buffers()]:
            counter.add(t, "weights")
        with _dispatch_mode(counter):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                preds = model(batch["img"])
                loss = crit(preds, batch)[0].sum() if n else sum(t.float().sum() for t in tree_leaves(preds))
            del preds
            loss.backward()
        model.zero_grad(set_to_none=True)
        rows.append({"labels": n, "step_mib": counter.peak / MIB})
        del loss, counter
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", nargs="+", default=["detect"], choices=["detect", "segment", "pose"])
    parser.add_argument("--model", default="yolov8n", help="yolov8n, yolov8s... (the yaml scale)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--labels", type=int, nargs="+", default=[8, 32, 64, 128])
    parser.add_argument("--nc", type=int, default=80)
    parser.add_argument("--ultralytics", default=None, help="folder holding another release's unpacked wheel")
    parser.add_argument("--step", action="store_true", help="whole training steps with the model (slow on a CPU)")
    args = parser.parse_args()
    ul = _import_ultralytics(args.ultralytics)
    print(f"ultralytics {ul.__version__}, {args.model}, batch {args.batch}, imgsz {args.imgsz}, nc {args.nc}")
    if args.step:
        print(f"{'task':8} {'labels':>6} {'step MiB':>9} {'- profile':>10} {'fit MiB':>8}   "
              "(labels 0: forward + sum + backward; fit: onecard.fit.yolo.loss_bytes)")
        for task in args.task:
            rows = step(ul, task, args.model, args.batch, args.imgsz, args.labels, args.nc)
            for r in rows:
                job = FitJob(model=args.model, job="train", batch=args.batch, imgsz=args.imgsz,
                             labels_per_image=r["labels"], max_labels=int(r["labels"]),
                             ultralytics_version=".".join(ul.__version__.split(".")[:3]))
                fit = yolo.loss_bytes(task, job, args.nc)[0] / MIB if r["labels"] else 0.0
                print(f"{task:8} {r['labels']:6d} {r['step_mib']:9.1f} {r['step_mib'] - rows[0]['step_mib']:10.1f} "
                      f"{fit:8.1f}")
        return
    print(f"{'task':8} {'labels':>6} {'fwd MiB':>9} {'kept MiB':>9} {'peak MiB':>9} {'B/(img*lab*anc)':>16}")
    for task in args.task:
        rows = measure(ul, task, args.model, args.batch, args.imgsz, args.labels, args.nc)
        first = rows[0]
        for r in rows:
            dn = r["labels"] - first["labels"]
            per_pair = args.batch * dn * r["anchors"]
            slope = (r["peak_mib"] - first["peak_mib"]) * MIB / per_pair if dn else float("nan")
            print(f"{task:8} {r['labels']:6d} {r['forward_mib']:9.1f} {r['kept_mib']:9.1f} {r['peak_mib']:9.1f} "
                  f"{slope:16.1f}")


if __name__ == "__main__":
    main()

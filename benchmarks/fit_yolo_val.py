"""Check onecard/fit/yolo.py's validation-pass term against ultralytics' own validator, and what it does to reserved.

    /work/detvenv/bin/python benchmarks/fit_yolo_val.py [--models yolov8n yolov8n-seg] [--batch 4] [--imgsz 320]

For each model: builds it from ultralytics' yaml (random weights, class biases set to 0 so that every anchor clears
the validator's conf 0.001 and NMS keeps max_det boxes, as an early model does) and its fp32 EMA copy, runs one
training step (16-bit autocast forward, the v8 loss, backward, gradients set to None as `optimizer.zero_grad()` does)
at `--batch`, then one validation batch of the EMA model at twice it (trainer.get_dataloader(..., batch_size * 2,
mode="val")) the way BaseValidator.__call__ takes it under inference mode: preprocess (fp16 image), forward and
the loss under autocast, postprocess (NMS; for segmentation the masks at the prototypes' H/4 resolution), and
update_metrics (box and mask IoUs) with the real validator class. Everything runs under onecard.fit.trace's
live-storage counter. It prints, GiB: the training step's and the validation batch's traced peaks of transient
tensors (weights, the EMA copy and anything alive before the phase left out) beside the estimator's `val` term, and
the peak reserved memory of the whole allocation log replayed through the CUDA caching allocator's rules
(trace.replay_caching_allocator) after the training step and after the validation batch: what the GPU_mem column of
an ultralytics log reads in epoch 1 and from epoch 2 on. bf16 autocast stands in for CUDA's fp16 (same bytes); on
the CPU NMS is torchvision's CPU kernel (the CUDA one adds an n x n/64 bitmask, n <= max_nms). Needs ultralytics
(`pip install 'onecard[detect]'`).
"""

from __future__ import annotations

import argparse
import copy
import types

from onecard.core.extras import require
from onecard.fit import measure_jobs, yolo
from onecard.fit.estimate import GIB
from onecard.fit.job import FitJob
from onecard.fit.trace import _dispatch_mode, _Events, replay_caching_allocator


def run(key: str, batch: int, imgsz: int, objects: int, torch: object) -> tuple[float, float, float, float,
                                                                            dict[str, float], float]:
    from ultralytics.cfg import get_cfg
    from ultralytics.nn import tasks

    arch = yolo.CATALOG[key]
    nc = yolo.DEFAULT_NC[arch.task]
    cls = {"detect": tasks.DetectionModel, "segment": tasks.SegmentationModel, "pose": tasks.PoseModel}[arch.task]
    model = cls(f"{key}.yaml", nc=nc, verbose=False)
    model.args = get_cfg()
    for seq in model.model[-1].cv3:  # class logits 0 -> sigmoid 0.5 at every anchor (bias_init made them ~1e-5)
        torch.nn.init.zeros_(seq[-1].bias)  # type: ignore[attr-defined]
    ema = copy.deepcopy(model).eval()  # ModelEMA: an fp32 copy, what the trainer validates
    counter = _Events()
    for t in [*model.parameters(), *model.buffers(), *ema.parameters(), *ema.buffers()]:
        counter.add(t, "weights")
    base = sum(counter.live.values())
    model.train()
    train = measure_jobs._yolo_batch(arch.task, [objects] * batch, imgsz, nc, torch)
    with _dispatch_mode(counter):
        with torch.autocast("cpu", dtype=torch.bfloat16):  # type: ignore[attr-defined]
            loss, _ = model(train)
        loss.sum().backward()
        for p in model.parameters():
            p.grad = None
        del loss, train
    step_peak, n_train = counter.peak - base, len(counter.events)
    before = sum(counter.live.values())
    phases: dict[str, float] = {}

    def phase(name: str) -> None:  # the peak since the last call, above what was alive before the validation
        phases[name] = (counter.peak - before) / GIB
        counter.peak = 0

    phase("")
    with _dispatch_mode(counter):
        kept = measure_jobs.validate_yolo(arch.task, ema, [objects] * (2 * batch), imgsz, nc, True, torch, phase)
    val_peak = max(v for k, v in phases.items() if k) * GIB
    _, reserved_step = replay_caching_allocator(counter.events[:n_train])
    _, reserved_all = replay_caching_allocator(counter.events)
    phases.pop("")
    return step_peak / GIB, val_peak / GIB, reserved_step / GIB, reserved_all / GIB, phases, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["yolov8n", "yolov8n-seg"])
    parser.add_argument("--batch", nargs="+", type=int, default=[4], help="training batches (validation: twice)")
    parser.add_argument("--imgsz", nargs="+", type=int, default=[320])
    parser.add_argument("--objects", type=int, default=4, help="labels in every image")
    args = parser.parse_args()
    torch = require("torch", "detect")
    require("ultralytics", "detect")
    measure_jobs.DEVICE = "cpu"
    from ultralytics.utils import nms

    nms.time = types.SimpleNamespace(time=lambda: 0.0)  # no time limit: the CPU's NMS would stop early
    print(f"{'model':14} {'b':>3} {'imgsz':>5} {'step':>6} {'val':>6} {'val est':>7} {'rsv step':>8} {'rsv +val':>8}"
          "   validation phases, traced / estimated (GiB; validation at batch 2b)")
    for key in args.models:
        for b in args.batch:
            for size in args.imgsz:
                step, val, r_step, r_all, phases, kept = run(key, b, size, args.objects, torch)
                job = FitJob(model=key, job="train", batch=b, imgsz=size, labels_per_image=args.objects,
                             max_labels=4 * args.objects)  # a mosaic of four: the validation images hold `objects`
                arch = yolo.CATALOG[key]
                est = yolo.val_phases(arch, job, yolo.DEFAULT_NC[arch.task])
                print(f"{key:14} {b:3} {size:5} {step:6.3f} {val:6.3f} {max(est.values()) / GIB:7.3f} "
                      f"{r_step:8.3f} {r_all:8.3f}   "
                      + ", ".join(f"{k} {v:.3f} / {est[k] / GIB:.3f}" for k, v in phases.items())
                      + f" ({kept:.0f} boxes kept per image)", flush=True)


if __name__ == "__main__":
    main()

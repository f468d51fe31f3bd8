"""detect's numbers (issue 16): training time per epoch and mAP50 of `onecard detect train` against plain
ultralytics with the same settings, and latency per image of PyTorch against ONNX Runtime, on a CPU.

    python benchmarks/detect.py [--train 200] [--val 50] [--imgsz 320] [--epochs 3] [--repeats 2] [--out FILE]
    python benchmarks/detect.py --run RUN_DIR [--rounds 3]     # latency and mAP kept only, on a trained run
    python benchmarks/detect.py --gpu                          # on a CUDA machine (benchmarks/gpu_check.sh)

data      onecard.detect.synthetic.make_shapes: coloured circles, squares and triangles (1-4 per image, 10-35% of the
          side) on noisy striped gradients, seed 0, generated here (no shipped data set is learnable from scratch
          on a CPU in minutes).
train     yolov8n.yaml from scratch at --imgsz, batch 16, AdamW lr0 0.003, 1 warm-up epoch, mosaic off, workers 0,
          seed 0, plots off: `onecard.detect.run.train` (data check, fit plan, record, trackio off) and
          `YOLO("yolov8n.yaml").train(...)` alike; alternated --repeats times, which side goes first alternating.
          Seconds per epoch from each one's results.csv (train + val), and the final mAP50 of best.pt on val.
latency   the first onecard run's best.pt at --imgsz, batch 1, fp32, on the CPU: the fused PyTorch model, its
          TorchScript, ONNX (ONNX Runtime, graph optimisation all, sequential) and OpenVINO exports (where installed),
          every runtime at the same thread count (1, then the physical cores), --rounds rounds with the order
          reversed each round, 5 warm-up + 30 timed runs each; medians, and the median of each round's ratio to
          PyTorch. Then `onecard detect export RUN --format onnx`: boxes against PyTorch's and the mAP kept.
gpu       yolov8s.yaml from scratch at batch 16, 640 px, AMP, 2 epochs on 64 shapes images of 640 px: the run's
          reserved peak (torch.cuda.max_memory_reserved) against fit's predicted reserved peak for the run's own
          fit job (target: within 10%); then `onecard detect bench` on CUDA for pytorch, onnx (onnxruntime-gpu)
          and engine (TensorRT) at batch 1 and 8.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("ONECARD_HOME", tempfile.mkdtemp(prefix="onecard-bench-"))

from onecard.core.progress import set_quiet  # noqa: E402
from onecard.detect import deploy, run  # noqa: E402
from onecard.detect.config import DetectConfig, ExportConfig  # noqa: E402
from onecard.detect.latency import SUFFIX, export, latency, missing_runtime, physical_cores  # noqa: E402
from onecard.detect.synthetic import make_shapes  # noqa: E402
from onecard.detect.ultra import box_metrics, setup  # noqa: E402

SETTINGS: dict[str, Any] = dict(epochs=3, imgsz=320, batch=16, optimizer="AdamW", lr0=0.003, warmup_epochs=1.0,
                                mosaic=0.0, workers=0, plots=False, seed=0)


def ours(data: Path, runs: Path, settings: dict[str, Any]) -> dict[str, Any]:
    config = DetectConfig(data=str(data), model="yolov8n.yaml", device="cpu", **settings)
    trained = run.train(config, str(runs), report_to=())
    m = trained.record["metrics"]
    return {"s_per_epoch": m["s_per_epoch"], "map50": m["map50"], "map50_95": m["map50_95"],
            "weights": str(trained.dir / run.BEST)}


def plain(data: Path, out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    from onecard.detect.ultra import yolo

    model = yolo("yolov8n.yaml")
    model.train(data=str(data), device="cpu", amp=False, project=str(out), name=f"plain-{time.time_ns()}",
                verbose=False, **settings)
    results = Path(model.trainer.save_dir) / "results.csv"
    times = [float(line.split(",")[1]) for line in results.read_text().splitlines()[1:]]
    return {"s_per_epoch": times[-1] / len(times), **box_metrics(model.trainer.metrics)}


def latency_rows(weights: str, imgsz: int, rounds: int, folder: Path) -> list[str]:
    """Each format at 1 thread and at the physical cores, alternated; medians and per-round ratios to PyTorch."""
    formats = [f for f in ("pytorch", "torchscript", "onnx", "openvino") if missing_runtime(f, "cpu") is None]
    files = {f: export(weights, f, imgsz, out=folder / f"best{SUFFIX.get(f, '.pt')}") for f in formats}
    lines = [f"| batch 1, imgsz {imgsz}, CPU | threads | median ms (each round) | x PyTorch (median of rounds) |",
             "|---|---:|---|---:|"]
    for threads in sorted({1, physical_cores()}):
        ms: dict[str, list[float]] = {f: [] for f in formats}
        for i in range(rounds):
            for f in formats if i % 2 == 0 else formats[::-1]:
                ms[f].append(latency(files[f], f, imgsz, 1, "cpu", threads, 5, 30)["median_ms"])
        for f in formats:
            ratios = [m / p for m, p in zip(ms[f], ms["pytorch"], strict=True)]
            lines.append(f"| {f} | {threads} | {statistics.median(ms[f]):.1f} ({', '.join(f'{m:.1f}' for m in ms[f])})"
                         f" | {statistics.median(ratios):.2f} |")
    return lines


def kept(run_dir: Path, threads: int) -> list[str]:
    """`onecard detect export RUN --format onnx`: the box check and the mAP of both files."""
    r = deploy.export(ExportConfig(run=str(run_dir), format="onnx", threads=threads, repeats=10))
    c = r["check"]
    return [f"onnx export: {c['matched']} of {c['boxes']} PyTorch boxes matched on {c['images']} val images (mean "
            f"IoU {c['mean_iou'] or 0:.4f}), {c['missing']} missing, {c['extra']} extra; mAP50 PyTorch "
            f"{r['map']['pytorch']['map50']:.4f}, ONNX {r['map']['onnx']['map50']:.4f} (drop {r['map50_drop']:.4f})"]


def gpu(work: Path) -> list[str]:
    """yolov8s training peak at batch 16, 640 px against fit's prediction; detect bench on CUDA."""
    from onecard.detect.config import BenchConfig
    from onecard.fit.job import FitJob
    from onecard.fit.plan import plan

    data = make_shapes(work / "shapes640", train=64, val=16, size=640, seed=0)
    config = DetectConfig(data=str(data), model="yolov8s.yaml", device="cuda", **{
        **SETTINGS, "epochs": 2, "imgsz": 640, "batch": 16, "workers": 2})
    trained = run.train(config, str(work / "runs"), report_to=())
    record = trained.record
    measured = record["peak_memory"]["gpu_reserved_gib"]
    predicted = plan(FitJob(**record["plan"]["fit_job"])).estimate.peak_reserved_gib
    lines = [f"yolov8s train, batch {record['metrics']['batch']}, imgsz 640, AMP {record['metrics']['amp']}: "
             f"measured reserved peak {measured:.2f} GiB, fit predicts {predicted:.2f} GiB: "
             f"{predicted / measured:.2f}x ({'within' if abs(predicted / measured - 1) <= 0.10 else 'NOT within'} 10%)"]
    result = deploy.bench(BenchConfig(run=str(trained.dir), formats=["pytorch", "onnx", "engine"], batch=[1, 8],
                                      device="cuda"), str(work / "runs"))
    lines += ["", "| format | batch | ms/image (median) | p90 | images/s | x pytorch | mAP50 |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['format']} | {r['batch']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | "
                     f"{r['images_per_s']:.0f} | {r['vs_pytorch']:.2f} | {r.get('map_map50', float('nan')):.4f} |")
    lines += [f"skipped {s['format']}: {s['reason']}" for s in result["skipped"]]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=int, default=200)
    p.add_argument("--val", type=int, default=50)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="latency rounds per thread count")
    p.add_argument("--run", type=Path, help="a trained run's folder: latency and mAP kept only, no training")
    p.add_argument("--gpu", action="store_true", help="the CUDA checks only: training peak against fit, detect bench")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    set_quiet(True)
    setup()
    import torch

    machine = (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, torch "
               f"{torch.__version__}, Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    if a.gpu:
        print("\n".join([machine, torch.cuda.get_device_name(0), "", *gpu(Path(tempfile.mkdtemp()))]))
        return
    if a.run:
        weights = str(a.run / run.BEST)
        text = "\n".join([machine, "", *latency_rows(weights, a.imgsz, a.rounds, Path(tempfile.mkdtemp())), "",
                          *kept(a.run, physical_cores())])
        print(text)
        if a.out:
            a.out.write_text(text + "\n")
        return
    settings = {**SETTINGS, "epochs": a.epochs, "imgsz": a.imgsz}
    work = Path(tempfile.mkdtemp(prefix="detect-bench-"))
    data = make_shapes(work / "shapes", train=a.train, val=a.val, size=a.imgsz, seed=0)
    rows: dict[str, list[dict[str, Any]]] = {"onecard detect train": [], "plain ultralytics": []}
    for i in range(a.repeats):
        order = [("onecard detect train", lambda: ours(data, work / "runs", settings)),
                 ("plain ultralytics", lambda: plain(data, work / "plain", settings))]
        for name, fn in order if i % 2 == 0 else order[::-1]:
            rows[name].append(fn())
    weights = rows["onecard detect train"][0]["weights"]
    lines = [machine, f"data: shapes, {a.train} train / {a.val} val at {a.imgsz} px; yolov8n.yaml from scratch, "
             f"{a.epochs} epochs, batch 16, AdamW lr0 0.003, mosaic off, CPU", "",
             "| trainer | s/epoch (median; each run) | mAP50 (each run) | mAP50-95 |", "|---|---|---|---|"]
    for name, rs in rows.items():
        each = {k: ", ".join(f"{r[k]:.{d}f}" for r in rs) for k, d in (("s_per_epoch", 1), ("map50", 3),
                                                                        ("map50_95", 3))}
        lines.append(f"| {name} | {statistics.median(r['s_per_epoch'] for r in rs):.1f} ({each['s_per_epoch']}) | "
                     f"{each['map50']} | {each['map50_95']} |")
    ratio = statistics.median(r["s_per_epoch"] for r in rows["onecard detect train"]) / statistics.median(
        r["s_per_epoch"] for r in rows["plain ultralytics"])
    lines += [f"time per epoch, ours / plain: {ratio:.2f}", ""]
    lines += [*latency_rows(weights, a.imgsz, a.rounds, work / "formats"), "",
              *kept(Path(weights).parents[2], physical_cores())]
    text = "\n".join(lines)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

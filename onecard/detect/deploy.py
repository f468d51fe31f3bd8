"""`onecard detect export` and `onecard detect bench`: a trained detector in deployment formats, each checked by
running it and timed on its own runtime.

An export is checked three ways: its boxes on the val images against PyTorch's (the same letterboxed inputs through
both files, then ultralytics' NMS; every box PyTorch finds clearly above the threshold must have a same-class box of
IoU >= `BOX_IOU` in the export, and the other way round), its mAP re-measured by ultralytics' validator, and its ms
per image beside PyTorch's. The results go into the training run's record (`exports`, `bench`).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from onecard.core.device import select_device
from onecard.core.errors import OnecardError
from onecard.core.records import RUN_FILE, Run
from onecard.detect.config import BenchConfig, ExportConfig
from onecard.detect.dataset import load_data, resolved_yaml
from onecard.detect.latency import SUFFIX, latency, missing_runtime, physical_cores, runner
from onecard.detect.latency import export as export_model
from onecard.detect.run import DATA_YAML, weights_of
from onecard.detect.ultra import box_metrics, quiet_stdout, setup, torch_device_arg, yolo

__all__ = ["export", "bench", "agreement", "BOX_IOU"]

CHECK_IMAGES = 50  # val images the box check runs on
CONF, NMS_IOU = 0.25, 0.7  # ultralytics' predict defaults
BOX_IOU = 0.9  # fp32 exports match to IoU ~1.0; 0.9 leaves room for TensorRT's kernel choices
CONF_MARGIN = 0.05  # a box within this of the threshold may fall on either side of it: not counted as missing


def export(config: ExportConfig, runs_root: str | None = None) -> dict[str, Any]:
    """Export the run's best weights, check the file by running it, and time both at batch 1."""
    setup()
    weights, record = weights_of(config.run, runs_root)
    imgsz = config.imgsz or (record or {}).get("metrics", {}).get("imgsz") or 640
    device = select_device(config.device)
    reason = missing_runtime(config.format, device)
    if reason:
        raise OnecardError(f"cannot export to {config.format} here: {reason}",
                           "on a machine with an NVIDIA GPU and tensorrt installed, pass --device cuda"
                           if config.format == "engine" else "install the runtime, or pick another --format")
    threads = config.threads or physical_cores()
    with quiet_stdout():
        path = export_model(weights, config.format, imgsz, 1, device)
    times = {fmt: latency(file, fmt, imgsz, 1, device, threads, config.warmup, config.repeats)
             for fmt, file in (("pytorch", weights), (config.format, path))}
    result: dict[str, Any] = {
        "run": record["id"] if record else None, "weights": weights, "exported": str(path), "format": config.format,
        "imgsz": imgsz, "device": device, "threads": threads, "latency": times,
        "vs_pytorch": times[config.format]["median_ms"] / times["pytorch"]["median_ms"]}
    data = _data(config.data, record, "export-check")
    if data is None:
        result["check"] = {"passed": None, "skipped": "a weights file has no val split: pass --data DATA.yaml"}
        return result
    images = load_data(data).images.get("val", [])[:CHECK_IMAGES]
    result["check"] = agreement(weights, path, config.format, images, imgsz, device, threads)
    if config.check_map:
        kept = {"pytorch": _map(weights, data, imgsz, device, record),
                config.format: _map(str(path), data, imgsz, device, record)}
        result["map"] = kept
        result["map50_drop"] = kept["pytorch"]["map50"] - kept[config.format]["map50"]
    _record(record, "exports", config.format, result, path)
    return result


def bench(config: BenchConfig, runs_root: str | None = None) -> dict[str, Any]:
    """ms per image (median, p90) and images/s of each format at each batch size, and each format's mAP."""
    setup()
    weights, record = weights_of(config.run, runs_root)
    imgsz = config.imgsz or (record or {}).get("metrics", {}).get("imgsz") or 640
    device = select_device(config.device)
    threads = config.threads or physical_cores()
    folder = Path(weights).parent / "bench"
    data = _data(config.data, record, "bench")
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    maps: dict[str, dict[str, float]] = {}
    for fmt in dict.fromkeys(config.formats):
        reason = missing_runtime(fmt, device)
        if reason:
            skipped.append({"format": fmt, "reason": reason})
            continue
        files: dict[int, Path] = {}
        for batch in sorted({*config.batch, 1} if config.check_map and data else set(config.batch)):
            with quiet_stdout():  # one file per batch: the exports have a fixed input shape
                files[batch] = export_model(weights, fmt, imgsz, batch, device,
                                            folder / f"{Path(weights).stem}-b{batch}{SUFFIX.get(fmt, '')}")
        for batch in config.batch:
            rows.append({"format": fmt, **latency(files[batch], fmt, imgsz, batch, device, threads, config.warmup,
                                                  config.repeats)})
        if config.check_map and data is not None:
            maps[fmt] = _map(str(files[1]), data, imgsz, device, record)
    base = {r["batch"]: r["median_ms"] for r in rows if r["format"] == "pytorch"}
    for r in rows:
        r["vs_pytorch"] = r["median_ms"] / base[r["batch"]] if r["batch"] in base else None
        r.update({f"map_{k}": v for k, v in maps.get(r["format"], {}).items() if k in ("map50", "map50_95")})
    result = {"run": record["id"] if record else None, "weights": weights, "imgsz": imgsz, "device": device,
              "threads": threads, "rows": rows, "skipped": skipped, "map": maps,
              "map_note": None if data is not None else "no val split: pass --data DATA.yaml to measure mAP"}
    _record(record, "bench", device, result)
    return result


def _record(record: dict[str, Any] | None, key: str, name: str, value: dict[str, Any],
            artifact: Path | None = None) -> None:
    """Add `value` under `key` -> `name` in the training run's record (and the exported file as an artifact)."""
    if record is None:
        return
    folder = Path(record["dir"])
    run = Run(folder, json.loads((folder / RUN_FILE).read_text(encoding="utf-8")))
    run.set(key, {**run.record.get(key, {}), name: value})
    if artifact is not None:
        run.add_artifact(artifact, kind=f"export-{name}")



def agreement(weights: str, exported: Path, fmt: str, images: list[Path], imgsz: int, device: str = "cpu",
              threads: int | None = None, conf: float = CONF) -> dict[str, Any]:
    """Boxes of the exported file against PyTorch's on `images` (the same letterboxed inputs, ultralytics' NMS at
    `conf`). Passed: no box clearly above `conf` in either that the other lacks (same class, IoU >= BOX_IOU)."""
    import numpy as np
    import torch
    from ultralytics.utils.metrics import box_iou
    from ultralytics.utils.nms import non_max_suppression

    ref_fn, new_fn = runner(Path(weights), "pytorch", device, threads), runner(exported, fmt, device, threads)
    boxes = matched = missing = extra = 0
    ious: list[float] = []
    for image in images:
        x = _letterboxed(image, imgsz)
        ref, new = (non_max_suppression(torch.from_numpy(np.asarray(fn(x))), conf, NMS_IOU)[0]
                    for fn in (ref_fn, new_fn))
        boxes += len(ref)
        iou = box_iou(ref[:, :4], new[:, :4]) if len(ref) and len(new) else torch.zeros(len(ref), len(new))
        same = ref[:, 5:6] == new[:, 5].unsqueeze(0)  # (n_ref, n_new): same class
        best_ref = (iou * same).amax(1) if len(new) else torch.zeros(len(ref))
        best_new = (iou * same).amax(0) if len(ref) else torch.zeros(len(new))
        clear_ref, clear_new = ref[:, 4] >= conf + CONF_MARGIN, new[:, 4] >= conf + CONF_MARGIN
        matched += int((best_ref >= BOX_IOU).sum())
        missing += int(((best_ref < BOX_IOU) & clear_ref).sum())
        extra += int(((best_new < BOX_IOU) & clear_new).sum())
        ious += best_ref[best_ref >= BOX_IOU].tolist()
    return {"images": len(images), "boxes": boxes, "matched": matched, "missing": missing, "extra": extra,
            "min_iou": min(ious) if ious else None, "mean_iou": statistics.fmean(ious) if ious else None,
            "iou_needed": BOX_IOU, "conf": conf, "passed": missing == 0 and extra == 0}


def _letterboxed(image: Path, imgsz: int) -> Any:
    """One image as the exports take it: letterboxed to imgsz x imgsz, RGB, CHW, 0..1, batch of 1."""
    import cv2
    import numpy as np
    from ultralytics.data.augment import LetterBox

    im: Any = LetterBox((imgsz, imgsz), auto=False)(image=cv2.imread(str(image)))  # an image in: an image out
    return np.ascontiguousarray(im[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255


def _data(data: str | None, record: dict[str, Any] | None, scratch: str) -> str | None:
    """The data.yaml to check and score on: --data (resolved into the run folder), else the run's own."""
    if data is None:
        return str(Path(record["dir"]) / DATA_YAML) if record else None
    folder = (Path(record["dir"]) if record else Path.cwd() / "detect-eval") / scratch
    return str(resolved_yaml(load_data(data), folder / DATA_YAML))


def _map(file: str, data: str, imgsz: int, device: str, record: dict[str, Any] | None) -> dict[str, float]:
    """mAP of one file on the val split at batch 1. rect=False: ultralytics pads PyTorch's val batches to rectangles
    plus half a stride (a 320 px image runs at 352), while a fixed-shape export runs at imgsz; the same square input
    for every format isolates the export from the preprocessing."""
    out = (Path(record["dir"]) if record else Path.cwd() / "detect-eval") / "export-check"
    with quiet_stdout():
        m = yolo(file).val(data=data, imgsz=imgsz, batch=1, plots=False, rect=False, device=torch_device_arg(device),
                           project=str(out.parent), name=out.name, exist_ok=True, verbose=False)
    return box_metrics(m.results_dict)

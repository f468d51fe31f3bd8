"""COCO detection JSON (`instances_*.json`) and its image folder to a YOLO data set that `data check` passes.

COCO boxes are `[x, y, w, h]` in pixels from the top-left corner; YOLO rows are `class cx cy w h` normalised by
the image's size. COCO category ids may have gaps (COCO 2017 runs 1..90 for 80 classes): they become 0..n-1 in
category-id order, and `data.yaml` names them in that order. Crowd annotations (`iscrowd: 1`, a region of many
objects) are skipped and counted, as ultralytics' own COCO converter does.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from onecard.core.errors import DataError

__all__ = ["coco_to_yolo", "yolo_row"]

# pixel rounding in real COCO exports leaves boxes up to a fraction of a pixel past the edge: clipped, not refused
EDGE_SLACK_PX = 1.0
MAX_LISTED = 20


def yolo_row(cls: int, bbox: list[float], width: int, height: int) -> str:
    """One YOLO label row from a COCO `[x, y, w, h]` pixel box on a `width` x `height` image."""
    x, y, w, h = bbox
    return f"{cls} {(x + w / 2) / width:.8f} {(y + h / 2) / height:.8f} {w / width:.8f} {h / height:.8f}"


def coco_to_yolo(src: str | Path, out: str | Path, images: str | Path | None = None, val_fraction: float = 0.2,
                 seed: int = 0, force: bool = False) -> dict[str, Any]:
    """Convert `src` (a COCO JSON) and its images (`images`, default: the JSON's folder) into `out` (YOLO layout:
    `images/{train,val}`, `labels/{train,val}`, `data.yaml`). A seeded `val_fraction` of the images goes to val.

    The set is written in a temporary folder beside `out`, then renamed into place: a failed conversion leaves
    nothing half-written. Returns the counts. Raises DataError naming every bad annotation and image by its id.
    """
    src, out = Path(src).expanduser(), Path(out).expanduser()
    image_dir = Path(images).expanduser() if images is not None else src.parent
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise DataError(f"{out} exists and is not empty", "pass --force to replace it, or another --out")
    if not 0 < val_fraction < 1:
        raise DataError(f"val fraction {val_fraction} is outside (0, 1)", "pass e.g. --val-fraction 0.2")
    coco = _read(src)
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    cls_of = {c["id"]: i for i, c in enumerate(cats)}
    by_id = {im["id"]: im for im in coco["images"]}
    problems: list[str] = []
    rows: dict[int, list[str]] = {i: [] for i in by_id}
    crowd = 0
    sizes = {i: _size(im, image_dir, problems) for i, im in by_id.items()}
    for ann in coco.get("annotations", []):
        if ann.get("iscrowd"):
            crowd += 1
            continue
        row = _row(ann, by_id, sizes, cls_of, problems)
        if row is not None:
            rows[ann["image_id"]].append(row)
    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED]) + (f"\n  ... {len(problems) - MAX_LISTED} more"
                                                          if len(problems) > MAX_LISTED else "")
        raise DataError(f"{src}: {len(problems)} problems, nothing written:\n  {listed}",
                        "fix or remove these annotations and images in the JSON")
    ids = sorted(by_id)
    random.Random(seed).shuffle(ids)
    n_val = min(max(1, round(len(ids) * val_fraction)), len(ids) - 1)
    if n_val < 1:
        raise DataError(f"{src} has {len(ids)} image(s)", "a YOLO data set needs at least one train and one val image")
    split_of = {i: ("val" if k < n_val else "train") for k, i in enumerate(ids)}
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for i, im in by_id.items():
            name = Path(im["file_name"])
            for kind, path in (("images", name), ("labels", name.with_suffix(".txt"))):
                (stage / kind / split_of[i] / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(image_dir / name, stage / "images" / split_of[i] / name)
            if rows[i]:
                (stage / "labels" / split_of[i] / name.with_suffix(".txt")).write_text(
                    "".join(f"{r}\n" for r in rows[i]), encoding="utf-8")
        names = [str(c["name"]) for c in cats]
        (stage / "data.yaml").write_text(_data_yaml(names), encoding="utf-8")
        _replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    split_counts = Counter(split_of.values())
    return {
        "out": str(out), "data": str(out / "data.yaml"), "classes": len(cats), "images": len(by_id),
        "train": split_counts["train"], "val": split_counts["val"], "annotations": sum(len(r) for r in rows.values()),
        "crowd_skipped": crowd, "backgrounds": sum(not r for r in rows.values()),
        "category_ids": {str(c["id"]): cls_of[c["id"]] for c in cats},
    }


def _read(src: Path) -> dict[str, Any]:
    try:
        coco = json.loads(src.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"COCO file {src} does not exist", "pass the path of an instances_*.json") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{src}:{e.lineno}: not valid JSON ({e.msg})", "fix the file's JSON syntax") from None
    if not isinstance(coco, dict) or not all(isinstance(coco.get(k), list) for k in ("images", "categories")):
        raise DataError(f"{src}: no `images` and `categories` lists", "pass a COCO detection JSON (instances_*.json)")
    return coco


def _size(im: dict[str, Any], image_dir: Path, problems: list[str]) -> tuple[int, int] | None:
    """The image's (width, height): from the JSON, or read from the file when the JSON lacks them."""
    from PIL import Image

    path = image_dir / str(im.get("file_name", ""))
    name = Path(str(im.get("file_name", "")))
    if not im.get("file_name") or name.is_absolute() or ".." in name.parts:
        problems.append(f"image id {im['id']}: file_name {im.get('file_name')!r} is not a path inside the image folder")
        return None
    if not path.is_file():
        problems.append(f"image id {im['id']}: image file {path} is missing")
        return None
    if im.get("width") and im.get("height"):
        return int(im["width"]), int(im["height"])
    try:
        with Image.open(path) as opened:
            return opened.size
    except Exception as e:
        problems.append(f"image id {im['id']}: {path} does not open as an image ({e})")
        return None


def _row(ann: dict[str, Any], by_id: dict[int, Any], sizes: dict[int, tuple[int, int] | None],
         cls_of: dict[int, int], problems: list[str]) -> str | None:
    """The annotation's YOLO row, or None (and a problem naming the annotation id)."""
    where = f"annotation id {ann.get('id')} (image id {ann.get('image_id')})"
    if ann.get("image_id") not in by_id:
        problems.append(f"{where}: unknown image id")
        return None
    if ann.get("category_id") not in cls_of:
        problems.append(f"{where}: unknown category id {ann.get('category_id')} (categories: {sorted(cls_of)})")
        return None
    size = sizes[ann["image_id"]]
    if size is None:  # the image's own problem is listed already
        return None
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, int | float) for v in bbox):
        problems.append(f"{where}: bbox {bbox!r} is not [x, y, w, h]")
        return None
    (x, y, w, h), (width, height) = bbox, size
    if w <= 0 or h <= 0:
        problems.append(f"{where}: bbox {bbox} has zero area")
        return None
    s = EDGE_SLACK_PX
    if x < -s or y < -s or x + w > width + s or y + h > height + s:
        problems.append(f"{where}: bbox {bbox} reaches outside the {width}x{height} image")
        return None
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, width), min(y + h, height)
    return yolo_row(cls_of[ann["category_id"]], [x0, y0, x1 - x0, y1 - y0], width, height)


def _data_yaml(names: list[str]) -> str:
    import yaml

    # no `path:`: the splits resolve against data.yaml's own folder, so the set can be moved
    spec = {"train": "images/train", "val": "images/val", "names": dict(enumerate(names))}
    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)


def _replace(stage: Path, out: Path) -> None:
    """Rename `stage` to `out`; an existing `out` (empty, or --force) is moved aside first and removed after."""
    if not out.exists():
        os.replace(stage, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.replace(out, old / out.name)
    os.replace(stage, out)
    shutil.rmtree(old, ignore_errors=True)

"""COCO detection JSON (`instances_*.json`) or a Label Studio JSON export, and the images, to a YOLO data set that
`data check` passes.

COCO boxes are `[x, y, w, h]` in pixels from the top-left corner; YOLO rows are `class cx cy w h` normalised by
the image's size. COCO category ids may have gaps (COCO 2017 runs 1..90 for 80 classes): they become 0..n-1 in
category-id order, and `data.yaml` names them in that order. Crowd annotations (`iscrowd: 1`, a region of many
objects) are skipped and counted, as ultralytics' own COCO converter does.

Label Studio's JSON export is a list of tasks, each with `data.image` (an upload path such as
`/data/upload/1/8f3a-photo.jpg`, a local-storage URL `/data/local-files/?d=images/photo.jpg`, or a URL) and its
`annotations`, whose `rectanglelabels` results hold `x`, `y` (the top-left corner), `width` and `height` in percent of
the image, a `rotation` in degrees about that corner, and `original_width`/`original_height` in pixels. A rotated box
becomes the axis-aligned box around it. Its "YOLO" export is already the YOLO layout: `data check` reads it as it is.
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

__all__ = ["coco_to_yolo", "labelstudio_to_yolo", "yolo_row"]

# pixel rounding in real COCO exports leaves boxes up to a fraction of a pixel past the edge: clipped, not refused
EDGE_SLACK_PX = 1.0
MAX_LISTED = 20
LS_EDGE_SLACK_PCT = 0.5  # Label Studio's editor keeps boxes inside the image; this covers float rounding at the edge


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
    _check_args(out, force, val_fraction)
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
    _stop_on(problems, src, "fix or remove these annotations and images in the JSON")
    names = [str(c["name"]) for c in cats]
    items = {i: (image_dir / im["file_name"], Path(im["file_name"]), rows[i]) for i, im in by_id.items()}
    written = _write(items, names, out, val_fraction, seed, src)
    return {
        **written, "classes": len(cats), "annotations": sum(len(r) for r in rows.values()),
        "crowd_skipped": crowd, "category_ids": {str(c["id"]): cls_of[c["id"]] for c in cats},
    }


def labelstudio_to_yolo(src: str | Path, out: str | Path, images: str | Path | None = None,
                        val_fraction: float = 0.2, seed: int = 0, force: bool = False) -> dict[str, Any]:
    """Convert `src` (Label Studio's JSON export) and its images (found in `images`, default: the JSON's folder, by
    their path, else by file name) into `out` in the YOLO layout. Classes are the labels in alphabetical order.

    Each task's latest annotation that was not cancelled is used; tasks with none are skipped and counted, results
    other than rectangles (choices, polygons...) too. Raises DataError naming every bad task and result by id.
    """
    src, out = Path(src).expanduser(), Path(out).expanduser()
    image_dir = Path(images).expanduser() if images is not None else src.parent
    _check_args(out, force, val_fraction)
    tasks = _read_labelstudio(src)
    problems: list[str] = []
    boxes: dict[int, list[tuple[str, list[float]]]] = {}
    files: dict[int, Path] = {}
    by_name: dict[str, Any] = {}
    other: Counter[str] = Counter()
    unlabelled = several = rotated = 0
    for n, task in enumerate(tasks):
        if not isinstance(task, dict):
            problems.append(f"task #{n}: {task!r:.60} is not a task object")
            continue
        where = f"task {task.get('id', f'#{n}')}"
        annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if not annotations:
            unlabelled += 1
            continue
        file = _ls_image(task, image_dir, where, problems)
        if file is not None and by_name.setdefault(file.name, where) != where:
            problems.append(f"{where}: image {file.name} is also {by_name[file.name]}'s (one file name per image)")
        several += int(len(annotations) > 1)
        annotation = annotations[-1]
        rows = []
        for k, result in enumerate(annotation.get("result") or []):
            if result.get("type") != "rectanglelabels":
                other[str(result.get("type"))] += 1
                continue
            label_box = _ls_box(result, f"{where}, annotation {annotation.get('id')}, result "
                                        f"{result.get('id', f'#{k}')}", problems)
            if label_box is not None:
                rotated += bool(result["value"].get("rotation"))
                rows.append(label_box)
        if file is not None:
            files[n], boxes[n] = file, rows
    if not files and not problems:
        problems.append(f"no task has an annotation ({unlabelled} tasks, all unlabelled or cancelled)")
    _stop_on(problems, src, "fix these tasks in Label Studio (or the JSON) and export again")
    names = sorted({label for rows in boxes.values() for label, _ in rows})
    cls = {name: i for i, name in enumerate(names)}
    items = {n: (files[n], Path(files[n].name), [yolo_row(cls[label], box, 100, 100) for label, box in boxes[n]])
             for n in files}
    written = _write(items, names, out, val_fraction, seed, src)
    return {**written, "classes": len(names), "names": names, "annotations": sum(len(r) for r in boxes.values()),
            "unlabelled_skipped": unlabelled, "several_annotations": several, "rotated": rotated,
            "other_results_skipped": dict(other)}


def _read_labelstudio(src: Path) -> list[Any]:
    try:
        tasks = json.loads(src.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"Label Studio export {src} does not exist", "export the project as JSON and pass its path") \
            from None
    except json.JSONDecodeError as e:
        raise DataError(f"{src}:{e.lineno}: not valid JSON ({e.msg})", "fix the file's JSON syntax") from None
    if not isinstance(tasks, list) or (tasks and isinstance(tasks[0], dict) and "annotations" not in tasks[0]):
        raise DataError(f"{src}: not a list of tasks with `annotations`",
                        "export the project in Label Studio's JSON format (not JSON-MIN; its YOLO export needs no "
                        "conversion: pass that folder to `onecard detect data check`)")
    return tasks


def _ls_image(task: dict[str, Any], image_dir: Path, where: str, problems: list[str]) -> Path | None:
    """The task's image file: `data.image` (or the only text field of `data`) under `image_dir`, else its name."""
    from urllib.parse import parse_qs, unquote, urlparse

    data = task.get("data") or {}
    texts = [v for v in data.values() if isinstance(v, str)]
    ref = data.get("image") or (texts[0] if len(texts) == 1 else None)
    if not isinstance(ref, str) or not ref:
        problems.append(f"{where}: no image in `data` (fields: {sorted(data)})")
        return None
    url = urlparse(ref)
    path = Path(unquote(parse_qs(url.query).get("d", [url.path])[0]))  # local storage: /data/local-files/?d=PATH
    for candidate in (image_dir / path.relative_to(path.anchor), image_dir / path.name):
        if ".." not in candidate.parts and candidate.is_file():
            return candidate
    problems.append(f"{where}: image {ref} is not in {image_dir} (as {path.relative_to(path.anchor)} or {path.name})")
    return None


def _ls_box(result: dict[str, Any], where: str, problems: list[str]) -> tuple[str, list[float]] | None:
    """(label, [x, y, w, h] in percent of the image, axis-aligned and clipped), or None (and a problem)."""
    import math

    value = result.get("value") or {}
    labels = value.get("rectanglelabels")
    if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
        problems.append(f"{where}: rectanglelabels {labels!r} is not one label")
        return None
    numbers = [value.get(k) for k in ("x", "y", "width", "height")]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
        problems.append(f"{where}: x, y, width, height {numbers!r} are not numbers")
        return None
    x, y, w, h = (float(v) for v in numbers)  # type: ignore[arg-type]
    if w <= 0 or h <= 0:
        problems.append(f"{where}: box {[x, y, w, h]} has zero area")
        return None
    angle = math.radians(float(value.get("rotation") or 0))
    if angle:  # corners in pixels (the aspect ratio matters), rotated clockwise about the top-left corner
        W, H = result.get("original_width"), result.get("original_height")
        if not (isinstance(W, int | float) and isinstance(H, int | float) and W > 0 and H > 0):
            problems.append(f"{where}: a rotated box needs original_width and original_height (got {W}, {H})")
            return None
        corners = [(dx * W / 100, dy * H / 100) for dx, dy in ((0, 0), (w, 0), (w, h), (0, h))]
        xs = [x + (cx * math.cos(angle) - cy * math.sin(angle)) * 100 / W for cx, cy in corners]
        ys = [y + (cx * math.sin(angle) + cy * math.cos(angle)) * 100 / H for cx, cy in corners]
        x, y, w, h = min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
    s = LS_EDGE_SLACK_PCT
    if x < -s or y < -s or x + w > 100 + s or y + h > 100 + s:
        problems.append(f"{where}: box {[round(v, 4) for v in (x, y, w, h)]} (percent) reaches outside the image")
        return None
    x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, 100.0), min(y + h, 100.0)
    return labels[0], [x0, y0, x1 - x0, y1 - y0]


def _check_args(out: Path, force: bool, val_fraction: float) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise DataError(f"{out} exists and is not empty", "pass --force to replace it, or another --out")
    if not 0 < val_fraction < 1:
        raise DataError(f"val fraction {val_fraction} is outside (0, 1)", "pass e.g. --val-fraction 0.2")


def _stop_on(problems: list[str], src: Path, fix: str) -> None:
    """Raise DataError listing the first `MAX_LISTED` problems, when there are any."""
    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED]) + (f"\n  ... {len(problems) - MAX_LISTED} more"
                                                          if len(problems) > MAX_LISTED else "")
        raise DataError(f"{src}: {len(problems)} problems, nothing written:\n  {listed}", fix)


def _write(items: dict[Any, tuple[Path, Path, list[str]]], names: list[str], out: Path, val_fraction: float,
           seed: int, src: Path) -> dict[str, Any]:
    """Write `items` (id -> image file, its name in the set, its label rows) as a YOLO set into `out`, a seeded
    `val_fraction` of them in val; staged in a temporary folder beside `out`, then renamed into place."""
    ids = sorted(items)
    random.Random(seed).shuffle(ids)
    n_val = min(max(1, round(len(ids) * val_fraction)), len(ids) - 1)
    if n_val < 1:
        raise DataError(f"{src} has {len(ids)} image(s)", "a YOLO data set needs at least one train and one val image")
    split_of = {i: ("val" if k < n_val else "train") for k, i in enumerate(ids)}
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for i, (file, name, rows) in items.items():
            for kind, path in (("images", name), ("labels", name.with_suffix(".txt"))):
                (stage / kind / split_of[i] / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, stage / "images" / split_of[i] / name)
            if rows:
                (stage / "labels" / split_of[i] / name.with_suffix(".txt")).write_text(
                    "".join(f"{r}\n" for r in rows), encoding="utf-8")
        (stage / "data.yaml").write_text(_data_yaml(names), encoding="utf-8")
        _replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    split_counts = Counter(split_of.values())
    return {"out": str(out), "data": str(out / "data.yaml"), "images": len(items), "train": split_counts["train"],
            "val": split_counts["val"], "backgrounds": sum(not rows for _, _, rows in items.values())}


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

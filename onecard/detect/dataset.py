"""Reading and checking a YOLO data set: `data.yaml`, its image folders (or lists), and one label file per image.

The check names every problem by file (and label line), instead of dropping the item as the trainer does: images
that do not decode, label rows with the wrong field count, class ids out of range, coordinates outside 0..1,
zero-area boxes, the same image in two splits (val then measures memorised images), duplicate images in a split,
classes with no instance. Images with no label file, or an empty one, are legal background images: counted.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from onecard.core.errors import DataError

__all__ = ["DataSet", "Problem", "load_data", "label_path", "check_data", "resolved_yaml", "IMAGE_SUFFIXES"]

# ultralytics data/utils.py IMG_FORMATS (the suffixes its loader takes)
IMAGE_SUFFIXES = {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic"}
SPLITS = ("train", "val", "test")
BOX_FIELDS = "class x_center y_center width height"


@dataclass
class DataSet:
    """A data set as `data.yaml` describes it, with its paths resolved."""

    yaml: Path
    root: Path
    names: dict[int, str]
    images: dict[str, list[Path]]  # split -> image files, sorted


@dataclass
class Problem:
    """One problem of the data set: an error stops training, a warning is worth a look."""

    severity: Literal["error", "warning"]
    kind: str
    file: str
    message: str
    line: int | None = None

    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


def load_data(data: str | Path) -> DataSet:
    """Read `data.yaml` (or the single *.yaml in a folder) and list each split's images.

    `path:` is the root (relative to the yaml's folder; empty: that folder); a split is a folder, a .txt list of
    image paths, or a list of either.
    """
    import yaml

    yaml_path = _find_yaml(Path(data).expanduser())
    try:
        spec = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise DataError(f"{yaml_path}: not valid YAML ({e})", "fix the file's YAML syntax") from None
    if not isinstance(spec, dict):
        raise DataError(f"{yaml_path}: expected keys path, train, val, names", "see ultralytics' coco8.yaml")
    root = Path(spec.get("path") or yaml_path.parent).expanduser()
    root = root if root.is_absolute() else (yaml_path.parent / root)
    names = spec.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise DataError(f"{yaml_path}: no class names (a `names:` list or mapping of id to name)",
                        "add e.g. `names: {0: cat, 1: dog}`")
    names = {int(k): str(v) for k, v in names.items()}
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{yaml_path}: class ids {sorted(names)} are not 0..{len(names) - 1}",
                        "number the classes from 0 without gaps")
    images: dict[str, list[Path]] = {}
    for split in SPLITS:
        if not spec.get(split):
            continue
        entries = spec[split] if isinstance(spec[split], list) else [spec[split]]
        images[split] = sorted({p for e in entries for p in _images_of(root / str(e), yaml_path, split)})
    for split in ("train", "val"):
        if split not in images:
            raise DataError(f"{yaml_path}: no `{split}:` split", f"add `{split}: images/{split}` (a folder of images)")
    return DataSet(yaml_path.resolve(), root.resolve(), names, images)


def _find_yaml(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))
        if len(found) == 1:
            return found[0]
        why = "no *.yaml file" if not found else f"{len(found)} yaml files ({', '.join(f.name for f in found)})"
        raise DataError(f"{path} has {why}", "pass the data.yaml itself")
    raise DataError(f"data set {path} does not exist", "pass the path of a data.yaml (YOLO layout)")


def _images_of(entry: Path, yaml_path: Path, split: str) -> list[Path]:
    if entry.is_dir():
        return [p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    if entry.is_file() and entry.suffix == ".txt":  # a list of image paths, relative to the list's folder
        lines = [s.strip() for s in entry.read_text(encoding="utf-8").splitlines() if s.strip()]
        return [(entry.parent / s).resolve() if not Path(s).is_absolute() else Path(s) for s in lines]
    raise DataError(f"{yaml_path}: split {split} points to {entry}, which does not exist",
                    "fix `path:` or the split's folder in data.yaml")


def label_path(image: Path) -> Path:
    """The label file of an image, as ultralytics finds it: the last `/images/` in the path becomes `/labels/`."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sb.join(str(image).rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt")


def check_data(ds: DataSet) -> dict[str, Any]:
    """Check every image and label line; returns the report (problems, per-split counts, class histogram, and
    `box_sides`: each valid box's width and height as shares of the image)."""
    problems: list[Problem] = []
    nc = len(ds.names)
    instances: dict[str, Counter[int]] = {}
    splits: dict[str, dict[str, int]] = {}
    box_sides: list[tuple[float, float]] = []
    first_seen: dict[str, tuple[str, Path]] = {}  # content hash -> (split, image)
    for split, images in ds.images.items():
        counts = Counter[int]()
        stats = {"images": len(images), "labelled": 0, "backgrounds": 0, "instances": 0, "corrupt": 0,
                 "max_instances": 0, "max4_instances": 0}
        top4: list[int] = []  # the four most-labelled images: a mosaic joins four (fit's max_labels)
        if not images:
            problems.append(Problem("error", "no images", str(ds.yaml), f"split {split} has no images"))
        for image in images:
            digest = _check_image(image, problems)
            if digest is None:
                stats["corrupt"] += 1
                continue
            if digest in first_seen:
                other_split, other = first_seen[digest]
                if other_split != split:
                    problems.append(Problem("error", "image in two splits", str(image),
                                            f"same content as {other} in {other_split}: a leak between splits"))
                else:
                    problems.append(Problem("warning", "duplicate image", str(image), f"same content as {other}"))
            else:
                first_seen[digest] = (split, image)
            boxes = _check_labels(label_path(image), nc, problems)
            if not boxes:
                stats["backgrounds"] += 1
                continue
            stats["labelled"] += 1
            stats["instances"] += len(boxes)
            top4 = sorted([*top4, len(boxes)])[-4:]
            counts.update(c for c, _, _ in boxes)
            box_sides.extend((w, h) for _, w, h in boxes)
        stats["max_instances"], stats["max4_instances"] = max(top4, default=0), sum(top4)
        instances[split], splits[split] = counts, stats
    missing = [f"{cid} ({name})" for cid, name in ds.names.items() if not instances.get("train", Counter())[cid]]
    if missing:
        problems.append(Problem("warning", "classes without instances", str(ds.yaml),
                                f"{len(missing)} of {len(ds.names)} classes have no instance in train: "
                                f"{', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}"))
    problems.sort(key=lambda p: p.severity != "error")
    classes = [{"id": cid, "name": name, **{s: instances[s][cid] for s in instances}}
               for cid, name in ds.names.items()]
    errors = sum(p.severity == "error" for p in problems)
    return {
        "data": str(ds.yaml), "root": str(ds.root), "classes": classes, "splits": splits,
        "problems": [asdict(p) for p in problems], "errors": errors, "warnings": len(problems) - errors,
        "box_sides": box_sides,
    }


def _check_image(image: Path, problems: list[Problem]) -> str | None:
    """The image's content hash, or None (and a problem) when it does not decode whole."""
    from PIL import Image

    try:
        data = image.read_bytes()
        with Image.open(image) as im:
            im.load()  # decodes every pixel: a truncated file fails here, not in verify()
            if im.size[0] < 10 or im.size[1] < 10:
                raise ValueError(f"image size {im.size} is under 10 px")
    except FileNotFoundError:
        problems.append(Problem("error", "missing image", str(image), "listed but not found"))
        return None
    except Exception as e:
        problems.append(Problem("error", "corrupt image", str(image), f"does not decode: {e}"))
        return None
    return hashlib.sha256(data).hexdigest()


def _check_labels(path: Path, nc: int, problems: list[Problem]) -> list[tuple[int, float, float]]:
    """The (class, width, height) of each valid row; a problem for each bad row. No file: a background image."""
    if not path.is_file():
        return []
    boxes: list[tuple[int, float, float]] = []
    seen: dict[str, int] = {}
    for n, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        row = raw.split()
        if not row:
            continue
        bad = _bad_row(row, nc)
        if bad:
            problems.append(Problem("error", "bad label line", str(path), f"{bad}: {raw.strip()!r}", line=n))
            continue
        key = " ".join(row)
        if key in seen:
            problems.append(Problem("warning", "duplicate label line", str(path), f"same box as line {seen[key]}",
                                    line=n))
            continue
        seen[key] = n
        xs, ys = [float(v) for v in row[1::2]], [float(v) for v in row[2::2]]
        w, h = (xs[1], ys[1]) if len(row) == 5 else (max(xs) - min(xs), max(ys) - min(ys))
        boxes.append((int(row[0]), w, h))
    return boxes


def _bad_row(row: list[str], nc: int) -> str | None:
    """Why a label row is bad, or None. A row is a box (5 fields) or a polygon (class and 3+ x y pairs)."""
    if len(row) != 5 and (len(row) < 7 or len(row) % 2 == 0):
        return f"{len(row)} fields, expected 5 ({BOX_FIELDS}) or a polygon (class x1 y1 x2 y2 x3 y3 ...)"
    try:
        cls, values = float(row[0]), [float(v) for v in row[1:]]
    except ValueError:
        return "not all fields are numbers"
    if cls != int(cls) or not 0 <= cls < nc:
        return f"class id {row[0]} is outside 0..{nc - 1} (data.yaml names {nc} classes)"
    if any(not 0 <= v <= 1 for v in values):
        return "coordinates outside 0..1 (YOLO labels are normalised by the image's width and height)"
    if len(row) == 5 and (values[2] <= 0 or values[3] <= 0):
        return "zero-area box (width or height 0)"
    if len(row) == 5 and any(c - s / 2 < -1e-6 or c + s / 2 > 1 + 1e-6
                             for c, s in ((values[0], values[2]), (values[1], values[3]))):
        return "box reaches outside the image (center +- half the size is outside 0..1)"
    return None


def resolved_yaml(ds: DataSet, out: Path) -> Path:
    """Write `out` (a data.yaml) and one list of absolute image paths per split beside it: what the trainer reads,
    saved with the run (the same images as checked, whatever the user's yaml does later)."""
    import yaml

    spec: dict[str, Any] = {"path": str(ds.root)}
    for split, images in ds.images.items():
        listing = out.parent / f"{split}.txt"
        listing.write_text("".join(f"{p}\n" for p in images), encoding="utf-8")
        spec[split] = str(listing)
    spec["names"] = ds.names
    out.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return out

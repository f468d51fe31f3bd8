"""The training images of a LoRA: the data check (Pillow only) and the images as tensors with their captions.

A data set is a folder of images, each with its caption in a `.txt` file of the same stem beside it (kohya's and
diffusers' dreambooth layout). The check names every problem by file: an image that does not decode is an error, and
so are a missing or empty caption (the trigger token alone would train on nothing) and an empty folder; a side under
the training resolution (upscaled, blurry), a duplicate by content hash and an EXIF rotation are warnings.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onecard.core.errors import DataError

if TYPE_CHECKING:
    import torch

__all__ = ["IMAGE_SUFFIXES", "list_images", "check_images", "load_images", "bucket_sizes", "load_bucketed", "dhash",
           "contact_sheet", "write_captions"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_NEAR_TINT = 16  # near-duplicates: mean R, G and B each within this many levels (0-255)
_EXIF_ORIENTATION = 0x0112  # the TIFF/EXIF Orientation tag; 1 is upright, 2-8 a flip and/or rotation


def list_images(folder: str | Path) -> list[Path]:
    """The image files directly in `folder`, sorted by name."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"{root} is not a folder",
                        "pass the folder that holds the training images and their .txt captions")
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def check_images(folder: str | Path, resolution: int, near_distance: int = 6) -> dict[str, Any]:
    """The data check's report: counts, and each problem as {file, severity, kind, message}; near-duplicates are
    images whose perceptual hashes (`dhash`) are at most `near_distance` bits apart."""
    from PIL import Image, UnidentifiedImageError

    images = list_images(folder)
    problems: list[dict[str, str]] = []

    def problem(path: Path, severity: str, kind: str, message: str) -> None:
        problems.append({"file": str(path), "severity": severity, "kind": kind, "message": message})

    if not images:
        problem(Path(folder), "error", "empty", f"no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    seen: dict[str, Path] = {}
    hashes: list[tuple[int, Any, Path]] = []
    decoded = captioned = 0
    for path in images:
        caption = path.with_suffix(".txt")
        if not caption.is_file():
            problem(path, "error", "caption", f"no caption: write one in {caption.name}")
        elif not caption.read_text(encoding="utf-8", errors="replace").strip():
            problem(caption, "error", "caption", "empty caption: describe the image (the trigger token is added)")
        else:
            captioned += 1
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            problem(path, "warning", "duplicate", f"same bytes as {seen[digest].name}: it counts twice")
        else:
            seen[digest] = path
        try:
            with Image.open(path) as im:
                orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
                im.load()  # decodes the pixels: a truncated file fails here, not at open
                width, height = im.size
                fingerprint = dhash(im)
                mean = im.convert("RGB").resize((1, 1), Image.Resampling.BOX)
                tint: tuple[int, ...] = mean.getpixel((0, 0))  # type: ignore[assignment]
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, ImportError) as e:
            # ImportError: ultralytics, once imported, patches Image.open to try a HEIF plugin it may lack
            problem(path, "error", "decode", f"does not decode: {e}")
            continue
        decoded += 1
        # dHash sees only grey gradients (flat images of any colours hash alike): the mean colours must match too
        near = next((other for h, t, other in hashes if bin(h ^ fingerprint).count("1") <= near_distance
                     and max(abs(a - b) for a, b in zip(t, tint, strict=True)) <= _NEAR_TINT), None)
        if near is not None and seen.get(digest) == path:  # an exact duplicate is reported once, as one
            problem(path, "warning", "near-duplicate", f"looks like {near.name} (perceptual hash): a near copy "
                    "weighs that picture twice")
        hashes.append((fingerprint, tint, path))
        if orientation != 1:
            problem(path, "warning", "exif", f"EXIF orientation {orientation}: the image is rotated or flipped when "
                    "loaded (as viewers show it)")
            if orientation in (5, 6, 7, 8):  # a quarter turn swaps the sides
                width, height = height, width
        if min(width, height) < resolution:
            problem(path, "warning", "small", f"{width}x{height} has a side under the training resolution "
                    f"{resolution}: it is upscaled (blurry); use a larger image or a lower --resolution")
    errors = sum(p["severity"] == "error" for p in problems)
    return {"data": str(folder), "resolution": resolution, "images": len(images), "decoded": decoded,
            "captioned": captioned, "errors": errors, "warnings": len(problems) - errors, "problems": problems}


def load_images(folder: str | Path, resolution: int, token: str) -> tuple[torch.Tensor, list[str]]:
    """The images as a (N, 3, resolution, resolution) tensor in [-1, 1] (EXIF-rotated, resized on the short side,
    center-cropped) and their captions with the trigger `token` in front."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    pixels, captions = [], []
    for path in list_images(folder):
        with Image.open(path) as im:
            rgb = ImageOps.exif_transpose(im).convert("RGB")
        rgb = ImageOps.fit(rgb, (resolution, resolution), Image.Resampling.BICUBIC)
        pixels.append(torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1))
        caption = path.with_suffix(".txt").read_text(encoding="utf-8").strip()
        captions.append(f"{token} {caption}" if token else caption)
    return torch.stack(pixels), captions


def bucket_sizes(resolution: int, step: int | None = None) -> list[tuple[int, int]]:
    """Aspect-ratio buckets as (width, height): sides multiples of `step`, each about resolution² pixels, from
    1:2 to 2:1 (kohya sd-scripts' `make_buckets`: max area resolution², sides from resolution/2 to 2x resolution,
    steps of 64; of 8 under 256 px, for the tiny test pipelines)."""
    step = step or (64 if resolution >= 256 else 8)
    area, sizes = resolution * resolution, set()
    for width in range(resolution // 2 // step * step or step, 2 * resolution + 1, step):
        height = min(2 * resolution, area // width // step * step)
        if height >= resolution // 2 and height >= step:
            sizes |= {(width, height), (height, width)}
    return sorted(sizes)


def load_bucketed(folder: str | Path, resolution: int,
                  token: str) -> list[tuple[tuple[int, int], torch.Tensor, list[str]]]:
    """The images grouped by aspect-ratio bucket: [((width, height), pixels (n, 3, height, width) in [-1, 1],
    captions)], each image resized to cover the bucket of the nearest aspect ratio and center-cropped to it."""
    import math

    import numpy as np
    import torch
    from PIL import Image, ImageOps

    sizes = bucket_sizes(resolution)
    groups: dict[tuple[int, int], tuple[list[torch.Tensor], list[str]]] = {}
    for path in list_images(folder):
        with Image.open(path) as im:
            rgb = ImageOps.exif_transpose(im).convert("RGB")
        ratio = math.log(rgb.width / rgb.height)
        size = min(sizes, key=lambda s: abs(math.log(s[0] / s[1]) - ratio))
        rgb = ImageOps.fit(rgb, size, Image.Resampling.BICUBIC)
        caption = path.with_suffix(".txt").read_text(encoding="utf-8").strip()
        pixels, captions = groups.setdefault(size, ([], []))
        pixels.append(torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1))
        captions.append(f"{token} {caption}" if token else caption)
    return [(size, torch.stack(p), c) for size, (p, c) in sorted(groups.items())]


def dhash(image: Any) -> int:
    """The 64-bit difference hash of a PIL image: grey 9x8, one bit per horizontal neighbour pair (brighter left).
    Resizing, recompression and small edits move few bits; different pictures differ in about half (Krawetz 2013)."""
    from PIL import Image

    grey = image.convert("L").resize((9, 8), Image.Resampling.LANCZOS)
    px = list(grey.getdata())
    bits = 0
    for row in range(8):
        for col in range(8):
            bits = bits << 1 | (px[row * 9 + col] > px[row * 9 + col + 1])
    return bits


def contact_sheet(folder: str | Path, out: str | Path, thumb: int = 128, columns: int = 8) -> Path:
    """Every image of `folder` as a thumbnail (EXIF-rotated, as training sees it) with its file name below; one PNG."""
    from PIL import Image, ImageDraw, ImageOps

    paths = list_images(folder)
    rows = max(1, -(-len(paths) // columns))
    label = 14
    sheet = Image.new("RGB", (columns * thumb, rows * (thumb + label)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, path in enumerate(paths):
        x, y = i % columns * thumb, i // columns * (thumb + label)
        try:
            with Image.open(path) as im:
                small = ImageOps.exif_transpose(im).convert("RGB")
            small.thumbnail((thumb, thumb))
            sheet.paste(small, (x + (thumb - small.width) // 2, y + (thumb - small.height) // 2))
        except (OSError, SyntaxError, ValueError):
            draw.text((x + 4, y + thumb // 2), "does not decode", fill="red")
        draw.text((x + 2, y + thumb), path.name[:20], fill="black")
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def write_captions(folder: str | Path, caption: Any, overwrite: bool = False) -> dict[str, list[str]]:
    """Write `caption(image_path)` into the `.txt` of each image that has no caption (or an empty one; every one
    with `overwrite`); returns the files written and kept."""
    written, kept = [], []
    for path in list_images(folder):
        txt = path.with_suffix(".txt")
        if not overwrite and txt.is_file() and txt.read_text(encoding="utf-8", errors="replace").strip():
            kept.append(str(txt))
            continue
        txt.write_text(str(caption(path)).strip() + "\n", encoding="utf-8")
        written.append(str(txt))
    return {"written": written, "kept": kept}

"""A synthetic detection set in YOLO layout: coloured shapes (circle, square, triangle) on textured backgrounds.

For tests, benchmarks and a first look when no labelled images are at hand. Seeded: the same arguments give the same
images and labels. Needs numpy and Pillow (both come with ultralytics).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CLASSES", "make_shapes"]

CLASSES = ("circle", "square", "triangle")


def make_shapes(out: str | Path, train: int = 200, val: int = 50, size: int = 320, max_objects: int = 4,
                seed: int = 0) -> Path:
    """Write `train` + `val` images of `size` px with 1..`max_objects` shapes each, their labels, and `data.yaml`.

    Shapes take 10-35% of the image side, may overlap a little, and keep their boxes inside the image.
    Returns the path of `data.yaml`.
    """
    import numpy as np
    import yaml
    from PIL import Image, ImageDraw

    root = Path(out)
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            # background: a colour gradient with noise and a few soft stripes (texture, not a flat field)
            base = rng.integers(40, 215, size=3)
            ramp = np.linspace(-30, 30, size)[None, :, None] * rng.choice([-1, 1], size=3)
            noise = rng.normal(0, 18, size=(size, size, 3))
            stripes = 15 * np.sin(np.arange(size)[:, None, None] / rng.uniform(4, 12))
            pixels = np.clip(base + ramp + noise + stripes, 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels)
            draw = ImageDraw.Draw(image)
            lines = []
            for _ in range(int(rng.integers(1, max_objects + 1))):
                cls = int(rng.integers(len(CLASSES)))
                side = int(rng.uniform(0.10, 0.35) * size)
                x0, y0 = (int(v) for v in rng.integers(0, size - side, size=2))
                box = (x0, y0, x0 + side, y0 + side)
                colour = tuple(int(v) for v in (255 - base + rng.integers(-40, 40, size=3)) % 256)
                if cls == 0:
                    draw.ellipse(box, fill=colour)
                elif cls == 1:
                    draw.rectangle(box, fill=colour)
                else:
                    draw.polygon([(x0 + side / 2, y0), (x0, y0 + side), (x0 + side, y0 + side)], fill=colour)
                cx, cy, w = (x0 + side / 2) / size, (y0 + side / 2) / size, side / size
                lines.append(f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {w:.6f}")
            image.save(root / "images" / split / f"{split}_{i:04d}.jpg", quality=92)
            (root / "labels" / split / f"{split}_{i:04d}.txt").write_text("\n".join(lines) + "\n")
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"path": str(root.resolve()), "train": "images/train", "val": "images/val",
                                    "names": dict(enumerate(CLASSES))}, sort_keys=False))
    return data

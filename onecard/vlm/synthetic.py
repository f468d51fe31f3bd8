"""A synthetic image-question set: coloured shapes on a 2 x 2 grid, short questions, one- or two-word answers.

What the learning test, the benchmark and `onecard vlm data synth` use to show that a tune works: the answers are
fixed by the pixels, so a model that reads the image answers above chance and one that guesses does not. Each image
holds `shapes` shapes (default 2), each of its own colour and kind, in distinct cells; each image gets one question
of each kind:

    "what colour is the square?"  -> "red"          (chance: 1 in 4 colours)
    "where is the circle?"        -> "top left"     (chance: 1 in 4 cells)
    "what shape is blue?"         -> "triangle"     (chance: 1 in 3 shapes)

Rows are the `vlm data check` / `vlm tune` format: {"image": "images/00012.png", "prompt": ..., "response": ...}, the
image path relative to the JSONL file. The same seed gives the same files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

__all__ = ["COLOURS", "SHAPES", "CELLS", "QUESTION_WORDS", "CHANCE", "make_image", "make_rows", "write_set",
           "write_splits"]

COLOURS: dict[str, tuple[int, int, int]] = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220),
                                             "yellow": (240, 220, 20)}
SHAPES = ("square", "circle", "triangle")
CELLS = ("top left", "top right", "bottom left", "bottom right")  # (row, column) = divmod(index, 2)
QUESTION_WORDS = ("what", "colour", "is", "the", "where", "shape", "?")
# the accuracy of a uniform guess among the right kind of answer, per question kind
CHANCE = {"colour": 1 / len(COLOURS), "where": 1 / len(CELLS), "shape": 1 / len(SHAPES)}


def make_image(objects: list[tuple[str, str, str]], size: int = 64) -> Any:
    """A PIL image of `size` px with each (colour, shape, cell) drawn into its grid cell, on a light grey ground."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (235, 235, 235))
    draw = ImageDraw.Draw(image)
    half = size // 2
    pad = max(2, size // 16)
    for colour, shape, cell in objects:
        row, col = divmod(CELLS.index(cell), 2)
        x0, y0 = col * half + pad, row * half + pad
        x1, y1 = x0 + half - 2 * pad, y0 + half - 2 * pad
        fill = COLOURS[colour]
        if shape == "square":
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif shape == "circle":
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        else:
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    return image


Scene = tuple[list[tuple[str, str, str]], list[dict[str, str]]]  # (colour, shape, cell) objects, their questions


def make_rows(images: int, seed: int = 0, shapes: int = 2) -> list[Scene]:
    """`images` random scenes, each with its three questions: [(objects, [{"kind", "prompt", "response"}...])]."""
    rng = random.Random(seed)
    scenes = []
    for _ in range(images):
        objects = list(zip(rng.sample(list(COLOURS), shapes), rng.sample(SHAPES, shapes), rng.sample(CELLS, shapes),
                           strict=True))
        asked = [rng.choice(objects) for _ in range(3)]  # each question asks about its own object
        scenes.append((objects, [
            {"kind": "colour", "prompt": f"what colour is the {asked[0][1]}?", "response": asked[0][0]},
            {"kind": "where", "prompt": f"where is the {asked[1][1]}?", "response": asked[1][2]},
            {"kind": "shape", "prompt": f"what shape is {asked[2][0]}?", "response": asked[2][1]},
        ]))
    return scenes


def write_set(out: str | Path, images: int, seed: int = 0, shapes: int = 2, size: int = 64,
              name: str = "pairs.jsonl") -> Path:
    """Write `images` PNGs under OUT/images/ and their questions (3 per image) as OUT/NAME; returns the JSONL path."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    stem = Path(name).stem
    lines = []
    for i, (objects, questions) in enumerate(make_rows(images, seed, shapes)):
        image = Path("images") / f"{stem}-{i:05d}.png"
        make_image(objects, size).save(out / image)
        lines += [json.dumps({"image": image.as_posix(), "prompt": q["prompt"], "response": q["response"],
                              "kind": q["kind"]}) for q in questions]
    path = out / name
    path.write_text("\n".join(lines) + "\n")
    return path


def write_splits(out: str | Path, train_images: int = 200, dev_images: int = 50, seed: int = 0, shapes: int = 2,
                 size: int = 64) -> dict[str, Path]:
    """A train and a dev file from different seeds (no scene shared by design): {"train": ..., "dev": ...}."""
    return {"train": write_set(out, train_images, seed, shapes, size, "train.jsonl"),
            "dev": write_set(out, dev_images, seed + 10_000, shapes, size, "dev.jsonl")}

"""Image-text rows: read and check a JSONL file, drop duplicates, split, and write the rows a run keeps.

One JSON object per line:

    {"image": "photos/cat.jpg", "prompt": "What is on the sofa?", "response": "A cat."}
    {"images": ["a.png", "b.png"], "messages": [{"role": "user", "content": "Which is larger?"},
                                                {"role": "assistant", "content": "The left one."}]}

Image paths are local (no URLs), relative to the JSONL file's folder or absolute; the images open the first user
turn. A conversation alternates user and assistant turns (an optional system turn first) and ends with an answer.
Every bad row is reported with its line number and reason, a missing or undecodable image among them.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onecard.core.errors import DataError
from onecard.core.peft_run import dedupe_rows
from onecard.core.peft_run import split_rows as split

__all__ = ["Example", "BadRow", "Report", "read_examples", "load_examples", "dedupe", "split", "write_jsonl"]


@dataclass(frozen=True)
class Example:
    """One row: its line number, its images (absolute paths), and its turns as {"role", "content": text}."""

    line: int
    images: tuple[str, ...]
    turns: tuple[tuple[str, str], ...]  # (role, content)

    def messages(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.turns]

    def prompt(self) -> str:
        """The last user turn: the question an evaluation asks."""
        return next(content for role, content in reversed(self.turns) if role == "user")

    def response(self) -> str:
        """The last assistant turn: the reference answer."""
        return self.turns[-1][1]


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


@dataclass
class Report:
    """What reading a file found: the valid rows, the bad ones, and how many rows of each format."""

    examples: list[Example] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    formats: Counter[str] = field(default_factory=Counter)


def read_examples(path: str | Path, decode: bool = True) -> Report:
    """Every row of a JSONL file, valid or bad (with its line number and reason); `decode` opens each image."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}", "pass a JSONL file of image-text rows")
    report = Report()
    checked: dict[str, str | None] = {}  # image path -> why it cannot be used (None: it decodes)
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            images, turns, kind = _parse(row, path.parent)
        except (ValueError, TypeError) as e:
            report.bad.append(BadRow(number, str(e) if not isinstance(e, json.JSONDecodeError) else f"not JSON: {e}"))
            continue
        problems = [why for image in images if (why := _image_problem(image, decode, checked)) is not None]
        if problems:
            report.bad.append(BadRow(number, "; ".join(problems)))
            continue
        report.examples.append(Example(number, images, turns))
        report.formats[kind] += 1
    return report


def load_examples(path: str | Path) -> list[Example]:
    """The rows of a file that must be clean: any bad row is an error that names the first few by line."""
    report = read_examples(path)
    if report.bad:
        shown = "; ".join(f"line {b.line}: {b.reason}" for b in report.bad[:5])
        more = f" (and {len(report.bad) - 5} more)" if len(report.bad) > 5 else ""
        raise DataError(f"{path}: {len(report.bad)} bad rows: {shown}{more}",
                        f"fix or drop them; `onecard vlm data check {path}` lists every one")
    if not report.examples:
        raise DataError(f"{path} has no rows", "add image-text rows, one JSON object per line")
    return report.examples


def _parse(row: Any, root: Path) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...], str]:
    """(images, turns, format) of one JSON row; a ValueError says what is wrong with it."""
    if not isinstance(row, dict):
        raise ValueError("a row must be a JSON object")
    if "image" in row and "images" in row:
        raise ValueError("give 'image' or 'images', not both")
    names = [row["image"]] if "image" in row else row.get("images")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError("no image: give 'image' (a path) or 'images' (a list of paths)")
    if any("://" in n for n in names):
        raise ValueError("image URLs are not read: download the image and give its local path")
    images = tuple(str((root / n).resolve()) for n in names)
    if "messages" in row:
        turns = row["messages"]
        if not isinstance(turns, list) or not all(
                isinstance(t, dict) and isinstance(t.get("role"), str) and isinstance(t.get("content"), str)
                for t in turns):
            raise ValueError("'messages' must be a list of {\"role\": ..., \"content\": text}")
        roles = [t["role"] for t in turns]
        talk = roles[1:] if roles[:1] == ["system"] else roles
        if not talk or talk[-1] != "assistant" or any(r != ("user", "assistant")[i % 2] for i, r in enumerate(talk)):
            raise ValueError(f"'messages' must alternate user and assistant turns and end with an answer, got "
                             f"{' -> '.join(roles) or 'none'}")
        return images, tuple((t["role"], t["content"]) for t in turns), "messages"
    prompt, response = row.get("prompt"), row.get("response")
    if not isinstance(prompt, str) or not isinstance(response, str) or not response.strip():
        raise ValueError("a row needs 'prompt' and 'response' (text), or 'messages'")
    return images, (("user", prompt), ("assistant", response)), "prompt/response"


def _image_problem(image: str, decode: bool, checked: dict[str, str | None]) -> str | None:
    if image not in checked:
        if not Path(image).is_file():
            checked[image] = f"image not found: {image}"
        elif decode:
            from PIL import Image

            try:
                with Image.open(image) as picture:
                    picture.convert("RGB")  # decodes the pixels, not only the header
                checked[image] = None
            except Exception as e:  # PIL raises many kinds for a bad file: each is a reason to report
                checked[image] = f"image does not decode: {image} ({type(e).__name__}: {e})"
        else:
            checked[image] = None
    return checked[image]


def dedupe(examples: list[Example]) -> tuple[list[Example], list[tuple[int, int]]]:
    """The rows without exact repeats (same image bytes, same turns); and (line, same as line) for each dropped."""
    digests: dict[str, str] = {}

    def digest(image: str) -> str:
        if image not in digests:
            digests[image] = hashlib.sha256(Path(image).read_bytes()).hexdigest()
        return digests[image]

    return dedupe_rows(examples, key=lambda ex: (tuple(digest(i) for i in ex.images), ex.turns))


def write_jsonl(examples: list[Example], path: Path) -> None:
    """Rows in the `messages` format with absolute image paths (a run's own split files)."""
    path.write_text("".join(json.dumps({"images": list(ex.images), "messages": ex.messages()}) + "\n"
                            for ex in examples))

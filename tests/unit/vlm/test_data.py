"""Reading and checking image-text rows: bad rows by line, images that are missing or do not decode, duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("PIL")

from onecard.core.errors import DataError  # noqa: E402
from onecard.vlm.data import dedupe, load_examples, read_examples, split, write_jsonl  # noqa: E402
from onecard.vlm.synthetic import make_image  # noqa: E402


def _rows(tmp_path: Path, rows: list[object]) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture
def images(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "img").mkdir()
    make_image([("red", "square", "top left")]).save(tmp_path / "img" / "a.png")
    make_image([("blue", "circle", "bottom right")]).save(tmp_path / "img" / "b.png")
    (tmp_path / "img" / "broken.png").write_bytes(b"not a png")
    return "img/a.png", "img/b.png"


def test_each_bad_row_is_named_by_line_with_its_reason(tmp_path: Path, images: tuple[str, str]) -> None:
    a, b = images
    path = _rows(tmp_path, [
        {"image": a, "prompt": "what colour is the square?", "response": "red"},
        "{not json",
        {"image": "img/missing.png", "prompt": "q", "response": "r"},
        {"image": "img/broken.png", "prompt": "q", "response": "r"},
        {"prompt": "q", "response": "r"},
        {"image": "https://example.com/cat.jpg", "prompt": "q", "response": "r"},
        {"images": [a, b], "messages": [{"role": "user", "content": "which is red?"}]},
        {"image": a, "images": [b], "prompt": "q", "response": "r"},
        {"images": [a, b], "messages": [{"role": "system", "content": "be brief"},
                                        {"role": "user", "content": "which is red?"},
                                        {"role": "assistant", "content": "the left"}]},
    ])
    report = read_examples(path)
    reasons = {bad.line: bad.reason for bad in report.bad}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8]
    assert "not JSON" in reasons[2]
    assert "image not found" in reasons[3] and "missing.png" in reasons[3]
    assert "does not decode" in reasons[4]
    assert "no image" in reasons[5]
    assert "URL" in reasons[6]
    assert "end with an answer" in reasons[7]
    assert "not both" in reasons[8]
    assert [ex.line for ex in report.examples] == [1, 9]
    assert report.formats == {"prompt/response": 1, "messages": 1}
    assert report.examples[1].images == (str((tmp_path / a).resolve()), str((tmp_path / b).resolve()))
    with pytest.raises(DataError, match="line 2"):
        load_examples(path)


def test_duplicates_compare_image_bytes_and_turns(tmp_path: Path, images: tuple[str, str]) -> None:
    a, b = images
    (tmp_path / "img" / "copy.png").write_bytes((tmp_path / a).read_bytes())
    path = _rows(tmp_path, [
        {"image": a, "prompt": "q", "response": "r"},
        {"image": "img/copy.png", "prompt": "q", "response": "r"},  # the same picture under another name
        {"image": b, "prompt": "q", "response": "r"},
        {"image": a, "prompt": "q", "response": "other"},
    ])
    kept, dropped = dedupe(load_examples(path))
    assert dropped == [(2, 1)]
    assert [ex.line for ex in kept] == [1, 3, 4]


def test_split_is_seeded_and_written_rows_load_back(tmp_path: Path, images: tuple[str, str]) -> None:
    path = _rows(tmp_path, [{"image": images[i % 2], "prompt": f"q{i}", "response": "r"} for i in range(20)])
    examples = load_examples(path)
    train, dev = split(examples, 0.2, seed=1)
    assert (train, dev) == split(examples, 0.2, seed=1)
    assert len(dev) == 4 and len(train) == 16
    write_jsonl(dev, tmp_path / "dev.jsonl")
    again = load_examples(tmp_path / "dev.jsonl")
    assert [(ex.images, ex.turns) for ex in again] == [(ex.images, ex.turns) for ex in dev]

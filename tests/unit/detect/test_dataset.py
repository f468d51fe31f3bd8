"""The data check: every injected error named by file and line; backgrounds counted; the trainer's split lists."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("PIL")

from onecard.core.errors import DataError  # noqa: E402
from onecard.detect.dataset import check_data, label_path, load_data, resolved_yaml  # noqa: E402
from onecard.detect.synthetic import make_shapes  # noqa: E402


@pytest.fixture
def shapes(tmp_path: Path) -> Path:
    return make_shapes(tmp_path / "shapes", train=6, val=3, size=64, seed=1)


def _errors(report: dict, kind: str) -> list[dict]:
    return [p for p in report["problems"] if p["kind"] == kind]


def test_a_clean_set_has_no_problems(shapes: Path) -> None:
    report = check_data(load_data(shapes))
    assert report["errors"] == 0 and report["warnings"] == 0, report["problems"]
    assert report["splits"]["train"]["images"] == 6 and report["splits"]["val"]["images"] == 3
    assert sum(c["train"] for c in report["classes"]) == report["splits"]["train"]["instances"] > 0
    train = report["splits"]["train"]  # for fit's label knobs: the most labels in one image, and in four
    assert 0 < train["max_instances"] <= train["max4_instances"] <= min(train["instances"], 4 * train["max_instances"])


def test_each_bad_label_line_is_named_by_file_and_line(shapes: Path) -> None:
    label = shapes.parent / "labels" / "train" / "train_0000.txt"
    rows = label.read_text().splitlines()
    bad = ["7 0.5 0.5 0.2 0.2", "0 0.5 0.5 0.2", "0 1.4 0.5 0.2 0.2", "0 0.5 0.5 0.0 0.2", "0 0.05 0.5 0.3 0.2",
           "x 0.5 0.5 0.2 0.2"]
    label.write_text("\n".join(rows + bad) + "\n")
    report = check_data(load_data(shapes))
    found = {p["line"]: p["message"] for p in _errors(report, "bad label line")}
    assert all(p["file"] == str(label) for p in _errors(report, "bad label line"))
    n = len(rows)
    assert "class id 7 is outside 0..2" in found[n + 1]
    assert "4 fields, expected 5" in found[n + 2]
    assert "outside 0..1" in found[n + 3]
    assert "zero-area" in found[n + 4]
    assert "reaches outside the image" in found[n + 5]
    assert "not all fields are numbers" in found[n + 6]
    assert report["errors"] == 6


def test_corrupt_images_leaks_duplicates_and_backgrounds(shapes: Path) -> None:
    root = shapes.parent
    image = root / "images" / "train" / "train_0001.jpg"
    (root / "images" / "train" / "cut.jpg").write_bytes(image.read_bytes()[:600])  # truncated JPEG
    shutil.copyfile(image, root / "images" / "val" / "leak.jpg")  # the same image in train and val
    shutil.copyfile(image, root / "images" / "train" / "again.jpg")  # a duplicate within train
    label_path(root / "images" / "train" / "train_0002.jpg").unlink()  # no label file: a background
    label_path(root / "images" / "train" / "train_0003.jpg").write_text("")  # empty: a background too
    report = check_data(load_data(shapes))
    assert [p["file"] for p in _errors(report, "corrupt image")] == [str(root / "images" / "train" / "cut.jpg")]
    assert [p["file"] for p in _errors(report, "image in two splits")] == [str(root / "images" / "val" / "leak.jpg")]
    (duplicate,) = _errors(report, "duplicate image")  # the later of the two in file order, naming the other
    assert {Path(duplicate["file"]).name, Path(duplicate["message"].split()[-1]).name} == {"again.jpg",
                                                                                          "train_0001.jpg"}
    assert report["splits"]["train"]["backgrounds"] == 3  # two without boxes, and again.jpg (no label file)
    assert report["errors"] == 2  # corrupt, leak; backgrounds and duplicates within a split are not errors


def test_the_injected_errors_in_a_copy_of_coco8_are_all_found(shared_data: Path, tmp_path: Path) -> None:
    coco8 = tmp_path / "coco8"
    shutil.copytree(shared_data / "yolo" / "coco8", coco8)
    label = coco8 / "labels" / "train" / "000000000009.txt"
    lines = label.read_text().splitlines()
    label.write_text("\n".join([*lines, "80 0.5 0.5 0.1 0.1", "3 0.99 0.5 0.1 0.1"]) + "\n")
    image = coco8 / "images" / "val" / "000000000036.jpg"
    image.write_bytes(image.read_bytes()[:3000])
    label_path(coco8 / "images" / "val" / "000000000042.jpg").unlink()
    shutil.copyfile(coco8 / "images" / "train" / "000000000025.jpg", coco8 / "images" / "train" / "copy.jpg")
    report = check_data(load_data(coco8 / "coco8.yaml"))
    where = {(p["kind"], Path(p["file"]).name, p["line"]) for p in report["problems"]}
    assert ("bad label line", "000000000009.txt", len(lines) + 1) in where  # class id 80 of 80 classes
    assert ("bad label line", "000000000009.txt", len(lines) + 2) in where  # box past the right edge
    assert ("corrupt image", "000000000036.jpg", None) in where
    assert ("duplicate image", "copy.jpg", None) in where
    assert report["splits"]["val"]["backgrounds"] == 1  # the missing label: counted, not an error
    assert report["errors"] == 3


def test_data_yaml_errors_say_the_fix(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text("train: images/train\nval: images/val\n")
    with pytest.raises(DataError, match="no class names"):
        load_data(tmp_path)
    (tmp_path / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [a]\n")
    with pytest.raises(DataError, match="does not exist"):
        load_data(tmp_path / "data.yaml")
    with pytest.raises(DataError, match="does not exist"):
        load_data(tmp_path / "nowhere.yaml")


def test_the_trainer_reads_the_checked_images(shapes: Path, tmp_path: Path) -> None:
    import yaml

    ds = load_data(shapes)
    out = resolved_yaml(ds, tmp_path / "data.yaml")
    spec = yaml.safe_load(out.read_text())
    assert spec["names"] == {0: "circle", 1: "square", 2: "triangle"}
    listed = Path(spec["train"]).read_text().split()
    assert listed == [str(p) for p in ds.images["train"]]
    assert label_path(Path("/d/images/train/a.b.jpg")) == Path("/d/labels/train/a.b.txt")


def test_check_writes_the_histograms(shapes: Path, tmp_path: Path) -> None:
    from onecard.detect.config import CheckConfig
    from onecard.detect.run import check

    report = check(CheckConfig(data=str(shapes), plots=True, out=str(tmp_path / "plots")))
    assert [Path(p).name for p in report["plots"]] == ["classes.png", "box_sizes.png"]
    assert all(Path(p).stat().st_size > 5000 for p in report["plots"]) and "box_sides" not in report


def test_check_says_how_fit_plans_this_data(shapes: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The data's own crowding (the four most-labelled images make a mosaic's most) reaches fit's flags."""
    import json

    from onecard.cli import main

    monkeypatch.setenv("COLUMNS", "400")  # rich's width: the command on one line
    assert main(["detect", "data", "check", str(shapes), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    train = report["splits"]["train"]
    assert report["fit_labels"] == {"labels_per_image": round(train["instances"] / train["labelled"], 2),
                                    "max_labels": train["max4_instances"]}
    assert main(["detect", "data", "check", str(shapes)]) == 0
    text = capsys.readouterr().out
    assert f"--max-labels {train['max4_instances']}" in text and "onecard fit MODEL --job train" in text

"""COCO JSON to YOLO: boxes round-trip, category ids with gaps become 0..n-1, bad input named by id, and the
converted set passes the data check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("PIL")

from onecard.cli import main  # noqa: E402
from onecard.core.errors import DataError  # noqa: E402
from onecard.detect.convert import coco_to_yolo  # noqa: E402
from onecard.detect.dataset import check_data, label_path, load_data  # noqa: E402

CATEGORIES = [{"id": 90, "name": "toothbrush"}, {"id": 3, "name": "car"}, {"id": 17, "name": "cat"}]


def _coco(tmp_path: Path, n: int = 6, sizes_in_json: bool = True) -> tuple[Path, dict]:
    """n distinct images (sizes differ) in tmp_path/imgs, and a COCO JSON beside them; two boxes per image."""
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    images, annotations = [], []
    for i in range(n):
        w, h = 64 + 8 * i, 48 + 4 * i
        Image.new("RGB", (w, h), (10 * i, 255 - 20 * i, 7 * i)).save(folder / f"im{i}.png")
        image = {"id": 100 + i, "file_name": f"im{i}.png"}
        if sizes_in_json:
            image.update(width=w, height=h)
        images.append(image)
        annotations.append({"id": 1000 + 2 * i, "image_id": 100 + i, "category_id": [3, 17, 90][i % 3],
                            "bbox": [1.5 + i, 2.25, 20.0, 10.5 + i], "iscrowd": 0})
        annotations.append({"id": 1001 + 2 * i, "image_id": 100 + i, "category_id": 17,
                            "bbox": [0.0, 0.0, float(w), float(h)], "iscrowd": 0})
    annotations.append({"id": 5000, "image_id": 100, "category_id": 3, "bbox": [0, 0, 5, 5], "iscrowd": 1})
    coco = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    src = folder / "instances_train.json"
    src.write_text(json.dumps(coco))
    return src, coco


@pytest.mark.parametrize("sizes_in_json", [True, False])
def test_boxes_round_trip_and_category_ids_become_contiguous(tmp_path: Path, sizes_in_json: bool) -> None:
    src, coco = _coco(tmp_path, sizes_in_json=sizes_in_json)
    result = coco_to_yolo(src, tmp_path / "yolo")
    assert result["images"] == 6 and result["train"] + result["val"] == 6 and result["val"] >= 1
    assert result["annotations"] == 12 and result["crowd_skipped"] == 1 and result["classes"] == 3
    assert result["category_ids"] == {"3": 0, "17": 1, "90": 2}
    ds = load_data(tmp_path / "yolo" / "data.yaml")
    assert ds.names == {0: "car", 1: "cat", 2: "toothbrush"}  # category-id order
    files = {p.name: p for split in ds.images.values() for p in split}
    cls_of = {3: 0, 17: 1, 90: 2}
    for image in coco["images"]:
        w, h = 64 + 8 * (image["id"] - 100), 48 + 4 * (image["id"] - 100)
        rows = [r.split() for r in label_path(files[image["file_name"]]).read_text().splitlines()]
        expected = [a for a in coco["annotations"] if a["image_id"] == image["id"] and not a["iscrowd"]]
        assert len(rows) == len(expected)
        for row, ann in zip(rows, expected, strict=True):
            cx, cy, bw, bh = (float(v) for v in row[1:])
            back = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            assert int(row[0]) == cls_of[ann["category_id"]]
            assert back == pytest.approx(ann["bbox"], abs=1e-6)


def test_the_converted_set_passes_the_data_check(tmp_path: Path) -> None:
    src, _ = _coco(tmp_path)
    coco_to_yolo(src, tmp_path / "yolo")
    report = check_data(load_data(tmp_path / "yolo"))
    assert report["errors"] == 0 and report["warnings"] == 0, report["problems"]
    assert sum(s["instances"] for s in report["splits"].values()) == 12


def test_bad_input_is_named_by_annotation_and_image_id_and_nothing_is_written(tmp_path: Path) -> None:
    src, coco = _coco(tmp_path)
    coco["annotations"][0]["bbox"] = [50.0, 10.0, 30.0, 10.0]  # image 100 is 64 px wide: ends at 80
    coco["annotations"][1]["category_id"] = 4
    coco["images"][2]["file_name"] = "gone.png"
    src.write_text(json.dumps(coco))
    with pytest.raises(DataError) as e:
        coco_to_yolo(src, tmp_path / "yolo")
    message = str(e.value)
    assert "annotation id 1000 (image id 100): bbox [50.0, 10.0, 30.0, 10.0] reaches outside the 64x48 image" in message
    assert "annotation id 1001 (image id 100): unknown category id 4" in message
    assert "image id 102: image file" in message and "gone.png is missing" in message
    assert not (tmp_path / "yolo").exists() and [p.name for p in tmp_path.iterdir()] == ["imgs"]


def test_a_non_empty_out_is_kept_without_force(tmp_path: Path) -> None:
    src, _ = _coco(tmp_path)
    out = tmp_path / "yolo"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(DataError, match="--force"):
        coco_to_yolo(src, out)
    assert (out / "mine.txt").read_text() == "keep"
    coco_to_yolo(src, out, force=True)
    assert not (out / "mine.txt").exists() and (out / "data.yaml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "yolo"]  # no staging folder left


def test_cli_json_prints_the_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = _coco(tmp_path)
    out = tmp_path / "yolo"
    assert main(["detect", "convert", str(src), "--from", "coco", "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["images"] == 6 and printed["annotations"] == 12 and printed["crowd_skipped"] == 1
    assert printed["data"] == str(out / "data.yaml")
    assert main(["detect", "data", "check", str(out / "data.yaml"), "--json"]) == 0


def test_a_box_past_the_edge_by_rounding_is_clipped(tmp_path: Path) -> None:
    src, coco = _coco(tmp_path)
    coco["annotations"][0]["bbox"] = [-0.4, 30.0, 64.9, 18.5]  # image 100 is 64x48
    src.write_text(json.dumps(coco))
    coco_to_yolo(src, tmp_path / "yolo")
    report = check_data(load_data(tmp_path / "yolo"))
    assert report["errors"] == 0, report["problems"]
    row = next(p for p in (tmp_path / "yolo" / "labels").rglob("im0.txt")).read_text().splitlines()[0].split()
    assert [float(v) for v in row[1:]] == pytest.approx([0.5, 39 / 48, 1.0, 18 / 48], abs=1e-6)


# Label Studio's JSON export, written by hand as Label Studio 1.x writes it: a list of tasks, `data.image` an upload
# path (file name prefixed with an id) or a local-storage URL, boxes in percent of the image
def _labelstudio(tmp_path: Path) -> tuple[Path, list[dict]]:
    from PIL import Image

    folder = tmp_path / "export"
    (folder / "photos").mkdir(parents=True)
    for i, name in enumerate(["8f3a2b1c-cat.jpg", "photos/dog.png", "0c1d-two.jpg", "5e6f-none.jpg", "77aa-bg.jpg"]):
        Image.new("RGB", (200, 100), (40 * i, 90, 200 - 30 * i)).save(folder / name)

    def box(rid: str, x: float, y: float, w: float, h: float, label: str, rotation: float = 0) -> dict:
        return {"id": rid, "type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": 200,
                "original_height": 100, "image_rotation": 0,
                "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [label]}}

    tasks = [
        {"id": 1, "data": {"image": "/data/upload/3/8f3a2b1c-cat.jpg"}, "annotations": [
            {"id": 11, "was_cancelled": False, "result": [
                box("a", 10, 20, 30, 40, "cat"),
                {"id": "c", "type": "choices", "value": {"choices": ["indoor"]}}]}]},
        {"id": 2, "data": {"image": "/data/local-files/?d=photos%2Fdog.png"}, "annotations": [
            {"id": 21, "was_cancelled": False, "result": [box("b", 0, 0, 100, 100, "cat")]},
            {"id": 22, "was_cancelled": False, "result": [box("c", 60, 50, 40, 50, "dog")]},
            {"id": 23, "was_cancelled": True, "result": []}]},
        {"id": 3, "data": {"img": "/data/upload/3/0c1d-two.jpg"}, "annotations": [
            {"id": 31, "result": [box("d", 10, 10, 20, 10, "dog", rotation=90), box("e", 50, 50, 10, 10, "bird")]}]},
        {"id": 4, "data": {"image": "/data/upload/3/5e6f-none.jpg"}, "annotations": [], "predictions": []},
        {"id": 5, "data": {"image": "/data/upload/3/77aa-bg.jpg"}, "annotations": [{"id": 51, "result": []}]},
    ]
    src = folder / "project-3-at-2026-12-06.json"
    src.write_text(json.dumps(tasks))
    return src, tasks


def _rows(out: Path, image: str) -> list[list[float]]:
    label = next((out / "labels").rglob(f"{Path(image).stem}.txt"))
    return [[float(v) for v in line.split()] for line in label.read_text().splitlines()]


def test_labelstudio_boxes_in_percent_become_yolo_rows(tmp_path: Path) -> None:
    from onecard.detect.convert import labelstudio_to_yolo

    src, _ = _labelstudio(tmp_path)
    out = tmp_path / "yolo"
    result = labelstudio_to_yolo(src, out)
    assert result["names"] == ["bird", "cat", "dog"]  # alphabetical
    assert result["images"] == 4 and result["backgrounds"] == 1 and result["annotations"] == 4
    assert result["unlabelled_skipped"] == 1 and result["several_annotations"] == 1 and result["rotated"] == 1
    assert result["other_results_skipped"] == {"choices": 1}
    assert _rows(out, "8f3a2b1c-cat.jpg") == [pytest.approx([1, 0.25, 0.40, 0.30, 0.40])]
    assert _rows(out, "dog.png") == [pytest.approx([2, 0.80, 0.75, 0.40, 0.50])]  # the latest annotation, 22
    # 20% x 10% of a 200x100 image is 40x10 px; turned 90 degrees clockwise about its top-left corner (20, 10) px it
    # covers x 10..20 px, y 10..50 px: 5% x 40% from (5%, 10%)
    assert _rows(out, "0c1d-two.jpg") == [pytest.approx([2, 0.075, 0.30, 0.05, 0.40], abs=1e-6),
                                          pytest.approx([0, 0.55, 0.55, 0.10, 0.10])]
    assert not list((out / "labels").rglob("77aa-bg.txt")) and list((out / "images").rglob("77aa-bg.jpg"))
    report = check_data(load_data(out))
    assert report["errors"] == 0, report["problems"]
    assert {p["kind"] for p in report["problems"]} <= {"classes without instances"}  # 4 images: one class in val only


def test_labelstudio_bad_results_are_named_by_task_annotation_and_result(tmp_path: Path) -> None:
    from onecard.detect.convert import labelstudio_to_yolo

    src, tasks = _labelstudio(tmp_path)
    results = tasks[0]["annotations"][0]["result"]
    results[0]["value"]["width"] = 0
    results.append({**results[0], "id": "x", "value": {**results[0]["value"], "x": 90, "width": 20}})
    results.append({**results[0], "id": "y", "value": {**results[0]["value"], "width": 5,
                                                       "rectanglelabels": ["cat", "dog"]}})
    tasks[2]["data"]["img"] = "/data/upload/3/gone.jpg"
    src.write_text(json.dumps(tasks))
    with pytest.raises(DataError) as e:
        labelstudio_to_yolo(src, tmp_path / "yolo")
    message = str(e.value)
    assert "task 1, annotation 11, result a: box [10.0, 20.0, 0.0, 40.0] has zero area" in message
    assert ("task 1, annotation 11, result x: box [90.0, 20.0, 20.0, 40.0] (percent) reaches outside the image"
            in message)
    assert "task 1, annotation 11, result y: rectanglelabels ['cat', 'dog'] is not one label" in message
    assert "task 3: image /data/upload/3/gone.jpg is not in" in message
    assert not (tmp_path / "yolo").exists()


def test_labelstudio_json_min_is_refused_with_the_export_to_use(tmp_path: Path) -> None:
    from onecard.detect.convert import labelstudio_to_yolo

    src = tmp_path / "min.json"
    src.write_text(json.dumps([{"image": "/data/upload/1/a.jpg", "label": []}]))
    with pytest.raises(DataError, match="not JSON-MIN"):
        labelstudio_to_yolo(src, tmp_path / "yolo")


def test_cli_converts_a_labelstudio_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = _labelstudio(tmp_path)
    out = tmp_path / "yolo"
    assert main(["detect", "convert", str(src), "--from", "labelstudio", "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["images"] == 4 and printed["classes"] == 3 and printed["data"] == str(out / "data.yaml")
    assert main(["detect", "convert", str(src), "--from", "labelstudio", "--out", str(out)]) != 0  # not empty
    assert "1 unlabelled tasks skipped" not in capsys.readouterr().out
    assert main(["detect", "convert", str(src), "--from", "labelstudio", "--out", str(out), "--force"]) == 0
    assert "1 unlabelled tasks skipped" in capsys.readouterr().out

"""YOLOv8 estimator: the yaml walk against the published sizes, scaling, and measured.md row 48."""

from __future__ import annotations

import pytest

from onecard.fit import yolo
from onecard.fit.job import FitJob


@pytest.mark.parametrize("key", sorted(yolo.CATALOG))
def test_walk_reproduces_published_params(key: str) -> None:
    arch = yolo.CATALOG[key]
    # The docs' pose table sits up to 0.09M below the model (yolov8l-pose: 44,489,196 in ultralytics, 44.4M there).
    assert yolo.param_count(arch) / 1e6 == pytest.approx(arch.params_m, abs=0.1 if arch.task == "pose" else 0.06)


@pytest.mark.parametrize(
    ("key", "params"),
    # sum(p.numel()) of ultralytics 8.4.190's own model built from the yaml (benchmarks/fit_yolo_trace.py).
    [("yolov8n", 3_157_200), ("yolov8x-seg", 71_827_888), ("yolov8n-pose", 3_295_470),
     ("yolov8l-pose", 44_489_196), ("yolov8n-cls", 2_719_288), ("yolov8x-cls", 57_422_840)],
)
def test_walk_equals_ultralytics_model(key: str, params: int) -> None:
    assert yolo.param_count(yolo.CATALOG[key]) == params


def test_classify_head_on_three_classes() -> None:
    # roboflow/notebooks train-yolov8-classification @6af8b5b: yolov8n-cls on 3 classes, "1.44M parameters" (1,442,131).
    assert yolo.param_count(yolo.CATALOG["yolov8n-cls"], nc=3) == 1_442_131


def test_every_task_at_every_scale() -> None:
    for scale in "nsmlx":
        tasks = {yolo.CATALOG[f"yolov8{scale}{suffix}"].task for suffix in ("", "-seg", "-pose", "-cls")}
        assert tasks == {"detect", "segment", "pose", "classify"}


def test_heads_order_the_training_peak() -> None:
    assert _peak("yolov8s-cls", batch=16, imgsz=224) < _peak("yolov8s", batch=16, imgsz=224)
    assert _peak("yolov8s", batch=16) < _peak("yolov8s-pose", batch=16) < _peak("yolov8s-seg", batch=16)


def test_visdrone_yolov8s_exact_count() -> None:
    # ultralytics issue #4679 prints 11,139,470 parameters for YOLOv8s with 10 classes.
    assert yolo.param_count(yolo.CATALOG["yolov8s"], nc=10) == 11_139_470


@pytest.mark.parametrize(
    ("name", "key"),
    [("yolov8n", "yolov8n"), ("YOLOv8s.pt", "yolov8s"), ("yolov8x-seg", "yolov8x-seg"),
     ("yolov8m-pose.pt", "yolov8m-pose"), ("ultralytics/yolov8n-cls", "yolov8n-cls")],
)
def test_names(name: str, key: str) -> None:
    arch = yolo.find(name)
    assert arch is not None and arch.key == key


@pytest.mark.parametrize("name", ["yolov5s", "yolov8z", "yolo11n", ""])
def test_unknown_names(name: str) -> None:
    assert yolo.find(name) is None


def _peak(model: str, **kw: object) -> float:
    arch = yolo.find(model)
    assert arch is not None
    return yolo.estimate(arch, FitJob(model=model, job="train", **kw), None).peak_reserved_gib  # type: ignore[arg-type]


def test_peak_grows_with_batch_and_imgsz() -> None:
    assert _peak("yolov8s", batch=8) < _peak("yolov8s", batch=16)
    assert _peak("yolov8s", batch=8, imgsz=640) < _peak("yolov8s", batch=8, imgsz=1024)
    assert _peak("yolov8n", batch=8) < _peak("yolov8s", batch=8) < _peak("yolov8m", batch=8)
    assert _peak("yolov8s", batch=8) < _peak("yolov8s-seg", batch=8)


def test_amp_halves_activations() -> None:
    assert _peak("yolov8s", batch=16, amp=False) > 1.5 * _peak("yolov8s", batch=16, amp=True)


def test_inference_below_training() -> None:
    arch = yolo.CATALOG["yolov8m"]
    infer = yolo.estimate(arch, FitJob(model="yolov8m", job="infer", batch=8), None).peak_allocated_gib
    assert infer < _peak("yolov8m", batch=8) / 3


# measured.md row 48: ultralytics issue #4679, AutoBatch profile on a T4, memory_reserved() / 1E9 (decimal GB).
@pytest.mark.parametrize(("batch", "measured_gb"), [(2, 0.757), (4, 1.223), (8, 2.208), (16, 4.154)])
def test_autobatch_profile_rows_within_25_percent(batch: int, measured_gb: float) -> None:
    predicted = _peak("yolov8s", batch=batch, optimizer="sgd")
    assert abs(predicted / (measured_gb * 1e9 / 2**30) - 1) < 0.25

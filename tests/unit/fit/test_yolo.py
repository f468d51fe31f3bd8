"""YOLOv8 estimator: the yaml walk against the published sizes, scaling, and measured.md row 48."""

from __future__ import annotations

from typing import Any

import pytest

from onecard.core.gpus import lookup
from onecard.fit import observations, yolo
from onecard.fit.estimate import Estimate
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
    # The heads' own tensors (the walk, without the loss): detect < pose < segment.
    def walked(model: str) -> float:
        arch = yolo.find(model)
        assert arch is not None
        job = FitJob(model=model, job="train", batch=16)
        return _peak(model, batch=16) - yolo.loss_bytes(arch.task, job, yolo.DEFAULT_NC[arch.task])[0] * 1.1 / 2**30

    assert walked("yolov8s") < walked("yolov8s-pose") < walked("yolov8s-seg")
    # With the loss, COCO's 80-class detector holds more than the 1-class pose model, as ultralytics 8.4.190 measured
    # on the CPU (benchmarks/fit_yolo_loss.py --step, b16 640: 2921 + 193 MiB against 2998 + 58 MiB at 32 labels).
    assert _peak("yolov8s-pose", batch=16) < _peak("yolov8s", batch=16) < _peak("yolov8s-seg", batch=16)


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


def test_ultralytics_turns_amp_off_on_gtx_16xx_since_8_3_44() -> None:
    """check_amp returns False on a GTX 16xx whatever amp= asks (since 8.3.44): the plan is the fp32 step's."""
    arch, card = yolo.CATALOG["yolov8s"], lookup("gtx-1660-ti")

    def est(card_key: str, **kw: Any) -> Estimate:
        return yolo.estimate(arch, FitJob(model="yolov8s", job="train", batch=8, **kw), lookup(card_key))

    now, fp32 = est("gtx-1660-ti"), est("gtx-1660-ti", amp=False)
    assert now.peak_reserved_gib == fp32.peak_reserved_gib
    assert any("AMP off" in a and card.name in a for a in now.assumptions)
    old = {"ultralytics_version": "8.3.43"}  # the comparison ran then: AMP as asked
    assert est("gtx-1660-ti", **old).peak_reserved_gib < 0.8 * est("gtx-1660-ti", **old, amp=False).peak_reserved_gib
    assert est("rtx-4070-ti").peak_reserved_gib < 0.8 * fp32.peak_reserved_gib  # other cards keep AMP


def test_inference_below_training() -> None:
    arch = yolo.CATALOG["yolov8m"]
    infer = yolo.estimate(arch, FitJob(model="yolov8m", job="infer", batch=8), None).peak_allocated_gib
    assert infer < _peak("yolov8m", batch=8) / 3


# measured.md row 48: ultralytics issue #4679, AutoBatch profile on a T4, memory_reserved() / 1E9 (decimal GB).
@pytest.mark.parametrize(("batch", "measured_gb"), [(2, 0.757), (4, 1.223), (8, 2.208), (16, 4.154)])
def test_autobatch_profile_rows_within_25_percent(batch: int, measured_gb: float) -> None:
    # the profile runs no loss and comes before any validation pass
    predicted = _peak("yolov8s", batch=batch, optimizer="sgd", yolo_loss=False, yolo_val=False)
    assert abs(predicted / (measured_gb * 1e9 / 2**30) - 1) < 0.25


# The training loss: benchmarks/fit_yolo_loss.py --step on the CPU (bf16 autocast for CUDA's fp16), a whole step's
# peak less AutoBatch's profile step, in MiB: (task, model, batch, imgsz, release, labels, measured).
MEASURED_LOSS_MIB = [
    ("detect", "yolov8n", 8, 704, "8.4.190", 8, 122.3),
    ("detect", "yolov8n", 8, 704, "8.4.190", 64, 122.4),
    ("detect", "yolov8s", 16, 640, "8.4.190", 8, 193.2),
    ("detect", "yolov8n", 8, 704, "8.0.114", 8, 153.7),
    ("detect", "yolov8n", 8, 704, "8.0.114", 64, 205.9),
    ("detect", "yolov8n", 8, 704, "8.0.114", 128, 330.2),
    ("detect", "yolov8n", 8, 704, "8.3.0", 128, 330.2),
    ("detect", "yolov8n", 8, 704, "8.0.35", 64, 528.8),
    ("detect", "yolov8n", 8, 704, "8.0.35", 128, 1045.0),
    ("segment", "yolov8s-seg", 16, 640, "8.4.190", 16, 526.7),
    ("segment", "yolov8s-seg", 16, 640, "8.0.114", 4, 284.3),
    ("segment", "yolov8s-seg", 16, 640, "8.0.114", 16, 717.6),
    ("segment", "yolov8s-seg", 16, 640, "8.0.35", 16, 712.7),
]


@pytest.mark.parametrize(("task", "model", "batch", "imgsz", "release", "labels", "mib"), MEASURED_LOSS_MIB)
def test_loss_matches_ultralytics_own_loss_measured_on_cpu(
    task: yolo.Task, model: str, batch: int, imgsz: int, release: str, labels: int, mib: float
) -> None:
    job = FitJob(model=model, job="train", batch=batch, imgsz=imgsz, ultralytics_version=release,
                 labels_per_image=labels, max_labels=labels)
    # the lines are fitted on yolov8n b8 704 and yolov8s-seg b16 640; yolov8s b16 640 sits 5% below its line
    assert yolo.loss_bytes(task, job, 80)[0] / 2**20 == pytest.approx(mib, rel=0.05)


def test_loss_with_few_labels_sits_above_the_measured_segmentation_step() -> None:
    # 8.4.190 yolov8s-seg b16 640 with 1 and 4 labels per image: 157.6 MiB; the model takes the detection loss's
    # score line there (202 MiB): an over-count of 0.04 GiB, on the safe side.
    job = FitJob(model="yolov8s-seg", job="train", batch=16, imgsz=640, labels_per_image=1, max_labels=1)
    assert 157.6 < yolo.loss_bytes("segment", job, 80)[0] / 2**20 < 157.6 * 1.3


def test_more_labels_more_memory_where_the_assignment_is_dense() -> None:
    def loss(**kw: object) -> float:
        return yolo.loss_bytes("detect", FitJob(model="yolov8n", job="train", **kw), 80)[0]

    assert loss(ultralytics_version="8.0.35", max_labels=16) < loss(ultralytics_version="8.0.35", max_labels=64)
    assert loss(ultralytics_version="8.0.114", max_labels=64) < loss(ultralytics_version="8.0.114", max_labels=256)
    assert loss(max_labels=8) == loss(max_labels=256)  # 8.4.134+: sparse pairs, no (labels x anchors) tensors
    assert loss(ultralytics_version="8.0.114", max_labels=256) < loss(ultralytics_version="8.0.35", max_labels=256)


def test_segmentation_masks_grow_with_labels_per_image() -> None:
    def loss(n: float) -> float:
        return yolo.loss_bytes("segment", FitJob(model="yolov8s-seg", job="train", labels_per_image=n), 80)[0]

    assert loss(4) < loss(16) < loss(64)
    peak = yolo.estimate(yolo.CATALOG["yolov8s-seg"], FitJob(model="yolov8s-seg", job="train", labels_per_image=64),
                         None)
    assert any("masks" in note for note in peak.assumptions)


def test_loss_defaults_and_release_parsing() -> None:
    job = FitJob(model="yolov8n", job="train")
    assert job.labels_per_image == 7.3 and job.max_labels is None  # COCO train2017: 860,001 boxes / 118,287 images
    assert yolo.ultralytics_release(job) == yolo.CURRENT_ULTRALYTICS
    assert yolo.ultralytics_release(job.model_copy(update={"ultralytics_version": "8.0"})) == (8, 0, 0)
    assert yolo.anchors(640) == 8400 and yolo.anchors(704) == 10164
    # max_labels unset: four average images (a mosaic), ceil(4 x 7.3) = 30
    assert yolo.loss_bytes("detect", job.model_copy(update={"ultralytics_version": "8.0.35"}), 80) == \
        yolo.loss_bytes("detect", job.model_copy(update={"ultralytics_version": "8.0.35", "max_labels": 30}), 80)
    assert yolo.loss_bytes("classify", job, 1000)[0] == 0


def test_the_loss_is_in_the_training_estimate() -> None:
    job = FitJob(model="yolov8n", job="train", batch=8, imgsz=704)
    est = yolo.estimate(yolo.CATALOG["yolov8n"], job, None)
    old = yolo.estimate(yolo.CATALOG["yolov8n"], job.model_copy(update={"ultralytics_version": "8.0.35",
                                                                        "max_labels": 128}), None)
    assert old.parts["activations"] - est.parts["activations"] == pytest.approx((1045.0 - 122.3) / 1024, rel=0.03)


def test_yolo_loss_off_leaves_out_exactly_the_loss() -> None:
    """AutoBatch's profile (ultralytics utils/autobatch.py) runs forward and backward without the loss."""
    job = FitJob(model="yolov8s", job="train", batch=16)
    with_loss = yolo.estimate(yolo.CATALOG["yolov8s"], job, None)
    without = yolo.estimate(yolo.CATALOG["yolov8s"], job.model_copy(update={"yolo_loss": False}), None)
    loss, _ = yolo.loss_bytes("detect", job, 80)
    assert with_loss.parts["activations"] - without.parts["activations"] == pytest.approx(loss / 2**30, rel=1e-6)
    assert any("not computed" in note for note in without.assumptions)


@pytest.mark.parametrize(("model", "batch", "imgsz", "labels", "mib"),
                         # 8.4.190, nc 1 (benchmarks/fit_yolo_loss.py --step --task pose --nc 1)
                         [("yolov8n-pose", 8, 704, 8, 19.3), ("yolov8n-pose", 8, 704, 64, 84.7),
                          ("yolov8s-pose", 16, 640, 32, 58.5), ("yolov8s-pose", 16, 640, 128, 243.7)])
def test_pose_loss_grows_with_labels_as_measured(model: str, batch: int, imgsz: int, labels: int, mib: float) -> None:
    job = FitJob(model=model, job="train", batch=batch, imgsz=imgsz, max_labels=labels)
    # the line fits yolov8n's points; yolov8s's sit up to 19 MiB below it (the safe side)
    assert mib * 0.97 <= yolo.loss_bytes("pose", job, 1)[0] / 2**20 <= mib + 20


# The validation pass: benchmarks/fit_yolo_val.py runs ultralytics 8.4.190's own validator on the CPU (bf16 for CUDA's
# fp16) on one batch at twice the training batch, every anchor above conf 0.001: the traced peak of its transient
# tensors, GiB: (model, training batch, imgsz, labels per image, traced).
TRACED_VAL_GIB = [
    ("yolov8s", 4, 640, 4, 0.179),
    ("yolov8s-seg", 4, 640, 4, 0.251),
    ("yolov8n-seg", 4, 640, 4, 0.240),
    ("yolov8n-pose", 4, 640, 4, 0.092),
    ("yolov8s", 16, 640, 3, 0.716),
    ("yolov8s-seg", 16, 640, 3, 1.004),
]


@pytest.mark.parametrize(("model", "batch", "imgsz", "labels", "traced"), TRACED_VAL_GIB)
def test_validation_pass_matches_ultralytics_validator_traced_on_cpu(
    model: str, batch: int, imgsz: int, labels: int, traced: float
) -> None:
    arch = yolo.CATALOG[model]
    job = FitJob(model=model, job="train", batch=batch, imgsz=imgsz, labels_per_image=labels, max_labels=4 * labels)
    # at 640 the forward or the masks peak (the CUDA NMS bitmask, 0.1 GiB at most, below them); pose sits 15% over
    assert 0.9 * traced <= yolo.val_bytes(arch, job, yolo.DEFAULT_NC[arch.task])[0] / 2**30 <= 1.2 * traced


def test_segmentation_validation_holds_more_and_grows_with_imgsz_and_max_det(monkeypatch: pytest.MonkeyPatch) -> None:
    def val(model: str, **kw: object) -> float:
        arch = yolo.CATALOG[model]
        job = FitJob(model=model, job="train", batch=16, **kw)  # type: ignore[arg-type]
        return yolo.val_bytes(arch, job, yolo.DEFAULT_NC[arch.task])[0]

    assert val("yolov8s-seg") > val("yolov8s")
    assert val("yolov8s-seg", imgsz=1280) > 3.5 * val("yolov8s-seg")  # H x W: the forward maps and the H/4 masks
    # 8.3.154-8.3.216 kept every image's fp32 masks (MAX_DET x H/4 x W/4) until the metrics; 8.3.217 made them uint8
    kept_fp32 = val("yolov8s-seg", ultralytics_version="8.3.200")
    assert kept_fp32 > val("yolov8s-seg", ultralytics_version="8.3.100")
    assert kept_fp32 > val("yolov8s-seg")
    monkeypatch.setattr(yolo, "MAX_DET", 2 * yolo.MAX_DET)
    assert val("yolov8s-seg", ultralytics_version="8.3.200") > 1.5 * kept_fp32


def test_validation_pass_is_cache_on_top_of_the_training_step() -> None:
    arch = yolo.CATALOG["yolov8s-seg"]
    job = FitJob(model="yolov8s-seg", job="train", batch=16)
    with_val = yolo.estimate(arch, job, None)
    without = yolo.estimate(arch, job.model_copy(update={"yolo_val": False}), None)
    val = yolo.val_bytes(arch, job, 80)[0] / 2**30
    # the allocated peak is the training step's (the pass at twice the batch, without autograd, holds less) ...
    assert val < without.parts["activations"]
    assert with_val.peak_allocated_gib == without.peak_allocated_gib
    # ... what has to fit too: the pass's segments are cache, given back when the step needs the memory ...
    assert with_val.process_gib == without.process_gib
    assert with_val.cache_gib == pytest.approx(val, rel=1e-9) and without.cache_gib == 0
    # ... which a reserved reading holds on a card with room (T4: 14.56 GiB), and only the room above the need on a
    # card without it
    reading = observations.predicted_figure(with_val, "reserved", lookup("t4").usable_gib)
    assert reading - without.peak_reserved_gib == pytest.approx(val, rel=1e-9)
    tight = with_val.process_gib + val / 2
    assert observations.predicted_figure(with_val, "reserved", tight) == pytest.approx(
        with_val.peak_reserved_gib + val / 2, rel=1e-9)
    assert any("validation pass" in note for note in with_val.assumptions)
    assert any("not counted" in note for note in without.assumptions)

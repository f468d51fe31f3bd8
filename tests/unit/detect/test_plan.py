"""Batch, image size and AMP from fit: the planner and `onecard detect train` agree; the ladder; the AMP rule."""

from __future__ import annotations

import pytest

from onecard.detect.config import DetectConfig
from onecard.detect.plan import DEFAULT_BATCH, amp_runs_correctly, choose, labels_of, ladder
from onecard.fit.job import FitJob
from onecard.fit.plan import plan
from onecard.fit.yolo import AMP_BROKEN


def _config(**kw: object) -> DetectConfig:
    return DetectConfig(data="data.yaml", model="yolov8s.yaml", **kw)


def test_a_cpu_run_without_a_card_takes_ultralytics_defaults() -> None:
    settings, job = choose(_config(), "yolov8s.yaml", "cpu")
    assert (settings.batch, settings.imgsz, settings.amp) == (DEFAULT_BATCH, 640, False)
    assert "no GPU to plan for" in settings.source and job is not None


def test_the_batch_planned_for_a_card_fits_by_fits_own_prediction() -> None:
    settings, job = choose(_config(gpu="4070ti"), "yolov8s.yaml", "cpu")
    assert job is not None and settings.card is not None and settings.source.startswith("fit:")
    again = plan(FitJob(**settings.fit_job))  # what `onecard fit yolov8s --job train --batch N` answers
    assert again.fits and again.peak_upper_gib is not None and again.budget_gib is not None
    assert settings.imgsz == 640 and settings.upper_gib == pytest.approx(again.peak_upper_gib, abs=1e-3)
    # the largest batch that fits: the next power of two does not (or it is the search's top)
    bigger = plan(job.model_copy(update={"batch": job.batch * 2}))
    assert job.batch == 64 or not bigger.fits


def test_a_batch_the_user_sets_is_kept_and_a_too_large_one_is_refused() -> None:
    settings, _ = choose(_config(gpu="4070ti", batch=4), "yolov8s.yaml", "cpu")
    assert settings.batch == 4
    from onecard.core.errors import OnecardError

    with pytest.raises(OnecardError, match="batch 512 of yolov8s.yaml at imgsz 1280 does not fit") as info:
        choose(_config(gpu="4070ti", batch=512, imgsz=1280), "yolov8s.yaml", "cpu")
    assert info.value.fix is not None and "onecard fit yolov8s.yaml --job train --imgsz 1280 --gpu 4070ti --solve" \
        in info.value.fix and "lower --batch" in info.value.fix


def test_a_model_fit_does_not_know_trains_with_defaults() -> None:
    settings, job = choose(_config(gpu="4070ti"), "yolo11n.yaml", "cpu")
    assert job is None and "no memory estimator for yolo11n.yaml" in settings.source


def test_amp_only_where_fp16_trains_correctly() -> None:
    assert not amp_runs_correctly("cpu")
    assert AMP_BROKEN.search("NVIDIA GeForce GTX 1660 SUPER")  # ultralytics #17812
    assert not AMP_BROKEN.search("NVIDIA GeForce RTX 4070 Ti")


def test_the_oom_ladder_halves_the_batch_and_turns_amp_on_only_where_it_runs() -> None:
    job = FitJob(model="yolov8s", job="train", batch=16, imgsz=640, amp=False)
    with_amp = [(j.amp, j.batch) for j, _ in ladder(job, amp_ok=True)]
    without = [(j.amp, j.batch) for j, _ in ladder(job, amp_ok=False)]
    assert with_amp[0] == (True, 16) and with_amp[1] == (True, 8)
    assert without[0] == (False, 8) and all(not amp for amp, _ in without)


@pytest.mark.parametrize(("model", "gpu", "imgsz"), [
    ("yolov8n.yaml", "rtx-3060", 640), ("yolov8s.yaml", "4070ti", "auto"), ("yolov8m.yaml", "4090", 640),
    ("yolov8s.yaml", "4070ti", 1280)])
def test_the_batch_detect_train_picks_fits_by_the_fit_command(model: str, gpu: str, imgsz: int | str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from onecard.cli import main

    settings, job = choose(DetectConfig(data="data.yaml", model=model, gpu=gpu, imgsz=imgsz), model, "cpu")
    assert job is not None and settings.source.startswith("fit:")
    asked = ["fit", model.removesuffix(".yaml"), "--job", "train", "--batch", str(settings.batch), "--imgsz",
             str(settings.imgsz), "--amp" if settings.amp else "--no-amp", "--gpu", gpu, "--json"]
    # the user's command as typed (optimizer auto: SGD's one state) and with the AdamW detect plans for (two states)
    for extra in ([], ["--optimizer", "adamw"]):
        assert main([*asked, *extra]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert answer["fits"] and answer["peak_upper_gib"] <= answer["budget_gib"]
        assert answer["peak_upper_gib"] <= settings.upper_gib + 1e-3  # detect planned on the larger of the two
    assert answer["peak_upper_gib"] == pytest.approx(settings.upper_gib, abs=1e-3)


def test_the_data_checks_label_counts_reach_fit() -> None:
    train = {"images": 10, "labelled": 8, "instances": 20, "max_instances": 9, "max4_instances": 25}
    assert labels_of(train, mosaic=1.0) == {"labels_per_image": 2.5, "max_labels": 25}  # a mosaic joins four
    assert labels_of(train, mosaic=0.0)["max_labels"] == 9
    _, job = choose(_config(gpu="4070ti"), "yolov8s.yaml", "cpu", labels_of(train, 1.0))
    assert job is not None and (job.labels_per_image, job.max_labels) == (2.5, 25)
    _, default = choose(_config(gpu="4070ti"), "yolov8s.yaml", "cpu")
    assert default is not None and default.max_labels is None  # fit's COCO default


def test_fit_plans_for_the_installed_ultralytics() -> None:
    from importlib.metadata import version

    pytest.importorskip("ultralytics")
    _, job = choose(_config(gpu="4070ti"), "yolov8s.yaml", "cpu")
    assert job is not None and job.ultralytics_version == version("ultralytics")  # its target assignment's memory

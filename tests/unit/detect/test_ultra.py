"""ultralytics set up offline: a missing pretrained model is an error that says how to get it; fonts are local."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("ultralytics")

from onecard.core.errors import ModelNotFoundError  # noqa: E402
from onecard.detect.ultra import FONTS, box_metrics, resolve_model, setup, torch_device_arg  # noqa: E402


def test_setup_is_offline_without_telemetry_and_has_its_fonts() -> None:
    setup()
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    assert os.environ["YOLO_OFFLINE"] == "1" and SETTINGS["sync"] is False
    assert all((Path(USER_CONFIG_DIR) / name).stat().st_size > 100_000 for name in FONTS)  # no download needed


def test_a_missing_pretrained_model_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError) as e:
        resolve_model("yolov8s")
    assert "yolov8s.pt are not on this machine" in str(e.value)
    assert "yolo predict model=yolov8s.pt" in str(e.value) and "--model yolov8s.yaml" in str(e.value)


def test_models_resolve_to_local_files_or_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup()
    weights = tmp_path / "mine.pt"
    weights.write_bytes(b"x")
    assert resolve_model(str(weights)) == str(weights.resolve())
    assert resolve_model("yolov8n.yaml") == "yolov8n.yaml"  # built from ultralytics' cfg
    monkeypatch.chdir(tmp_path)
    (tmp_path / "yolov8n.pt").write_bytes(b"x")
    assert resolve_model("yolov8n") == str((tmp_path / "yolov8n.pt").resolve())


def test_metric_names_and_devices() -> None:
    assert box_metrics({"metrics/mAP50(B)": 0.5, "metrics/mAP50-95(B)": 0.25, "fitness": 0.3}) == {
        "map50": 0.5, "map50_95": 0.25}
    assert [torch_device_arg(d) for d in ("cuda", "cuda:1", "cpu")] == ["0", "1", "cpu"]

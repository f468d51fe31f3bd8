"""`onecard detect` as a user runs it: check a data set, train a from-scratch yolov8n on a synthetic shapes set,
evaluate, predict, Ctrl-C mid-training and resume, export (checked box by box) and bench.

The data set is generated (onecard.detect.synthetic: coloured shapes on textured backgrounds, 64 train / 16 val images
at 128 px), not shipped: no labelled set in ../shared/data is small and learnable enough for a CPU test (coco8 has 80
classes and 4 training images). A from-scratch model scores mAP50 0 for its first epochs (measured: 0 up to epoch 12
of 15); 16 epochs lift it above that on 2 CPU cores in about 90 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ultralytics")

from onecard.detect.synthetic import make_shapes  # noqa: E402
from tests.integration.interrupt import IGNORING_SIGINT, interrupt_when_ready  # noqa: E402

pytestmark = pytest.mark.integration

ONECARD = [sys.executable, "-m", "onecard.cli"]
TINY = Path(__file__).resolve().parents[2] / "configs" / "detect" / "tiny.yaml"


def _run(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*ONECARD, *args], capture_output=True, text=True, timeout=600,
                            env=env or os.environ.copy())
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def _record(run_dir: str | Path) -> dict[str, Any]:
    return dict(json.loads((Path(run_dir) / "run.json").read_text()))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tiny training run, shared by the tests that read it."""
    base = tmp_path_factory.mktemp("detect")
    data = make_shapes(base / "shapes", train=64, val=16, size=128, max_objects=2, seed=0)
    env = {**os.environ, "ONECARD_HOME": str(base / "home")}
    out = _run("detect", "train", "--config", str(TINY), "--data", str(data), "--runs-dir", str(base / "runs"),
               "--report-to", "none", "--json", env=env)
    return {"data": data, "runs": base / "runs", "env": env, "out": json.loads(out.stdout), "base": base}


@pytest.mark.slow
def test_training_lowers_the_loss_and_lifts_map_above_the_untrained_model(trained: dict[str, Any]) -> None:
    out = trained["out"]
    record = _record(out["dir"])
    epochs = record["epochs"]
    assert [e["epoch"] for e in epochs] == list(range(1, 17))
    assert epochs[0]["map50"] == 0.0  # an untrained (one epoch) from-scratch model finds nothing
    # best.pt's (the best fitness: 0.1 mAP50 + 0.9 mAP50-95), validated on val after the last epoch; 0.076 measured
    assert out["map50"] > 0.02 and any(abs(e["map50"] - out["map50"]) < 1e-4 for e in epochs)
    assert out["final_box_loss"] < out["first_box_loss"]
    assert set(out) >= {"run_id", "map50", "map50_95", "precision", "recall", "s_per_epoch"}


@pytest.mark.slow
def test_the_record_holds_settings_metrics_and_weights_that_load_back(trained: dict[str, Any]) -> None:
    from ultralytics import YOLO

    record = _record(trained["out"]["dir"])
    assert record["status"] == "succeeded" and record["capability"] == "detect"
    assert record["config"]["imgsz"] == 128 and record["config"]["model"] == "yolov8n.yaml"
    assert record["plan"]["batch"] == 8 and record["plan"]["amp"] is False and record["plan"]["fit_job"]["imgsz"] == 128
    assert record["data"]["splits"]["train"]["images"] == 64
    assert record["metrics"]["map50"] == trained["out"]["map50"]
    artifacts = {Path(a["path"]).name: a for a in record["artifacts"]}
    assert {"best.pt", "last.pt", "results.csv", "data.yaml"} <= set(artifacts)
    model = YOLO(artifacts["best.pt"]["path"])
    assert model.names == {0: "circle", 1: "square", 2: "triangle"}
    assert (Path(trained["out"]["dir"]) / "train" / "results.png").is_file()  # ultralytics' plots, offline


@pytest.mark.slow
def test_eval_and_predict_read_the_run(trained: dict[str, Any], tmp_path: Path) -> None:
    run_id, env, runs = trained["out"]["run_id"], trained["env"], str(trained["runs"])
    result = json.loads(_run("detect", "eval", run_id, "--runs-dir", runs, "--json", env=env).stdout)
    assert result["map50"] == pytest.approx(trained["out"]["map50"], abs=0.02)  # same weights, same val split
    assert {c["name"] for c in result["per_class"]} <= {"circle", "square", "triangle"}
    images = trained["data"].parent / "images" / "val"
    out = tmp_path / "pred"
    result = json.loads(_run("detect", "predict", run_id, str(images / "val_0000.jpg"), str(images / "val_0001.jpg"),
                             "--out", str(out), "--conf", "0.01", "--runs-dir", runs, "--json", env=env).stdout)
    assert [Path(i["drawn"]).name for i in result["images"]] == ["val_0000.jpg", "val_0001.jpg"]
    assert all((out / n).stat().st_size > 1000 for n in ("val_0000.jpg", "val_0001.jpg"))
    saved = json.loads((out / "detections.json").read_text())
    for image in saved["images"]:
        for d in image["detections"]:
            assert d["name"] in {"circle", "square", "triangle"} and d["confidence"] >= 0.01
            x0, y0, x1, y1 = d["box_xyxy"]
            assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128


@pytest.mark.slow
def test_a_bad_data_set_stops_training_with_the_line_named(trained: dict[str, Any], tmp_path: Path) -> None:
    data = tmp_path / "shapes"
    shutil.copytree(trained["data"].parent, data)
    (data / "data.yaml").write_text(trained["data"].read_text().replace(str(trained["data"].parent), str(data)))
    label = data / "labels" / "train" / "train_0003.txt"
    label.write_text(label.read_text() + "5 0.5 0.5 0.1 0.1\n")
    lines = len(label.read_text().splitlines())
    check = _run("detect", "data", "check", str(data / "data.yaml"), check=False, env=trained["env"])
    assert check.returncode == 1 and f"{label}:{lines}: class id 5 is outside 0..2" in check.stdout
    train = _run("detect", "train", "--data", str(data), "--model", "yolov8n.yaml", "--runs-dir", str(tmp_path),
                 "--report-to", "none", check=False, env=trained["env"])
    assert train.returncode == 2 and f"{label}:{lines}" in train.stderr and "onecard detect data check" in train.stderr
    missing = _run("detect", "train", "--data", str(trained["data"]), "--model", "yolov8s.pt", "--runs-dir",
                   str(tmp_path), "--report-to", "none", check=False, env=trained["env"])
    assert missing.returncode == 2 and "yolo predict model=yolov8s.pt" in missing.stderr


@pytest.mark.slow
def test_ctrl_c_leaves_last_pt_and_an_interrupted_run_that_resumes(trained: dict[str, Any], tmp_path: Path) -> None:
    from ultralytics import YOLO

    runs = tmp_path / "runs"
    data = make_shapes(tmp_path / "small", train=16, val=4, size=96, seed=3)
    common = ["--runs-dir", str(runs), "--report-to", "none"]
    returncode, stderr, _ = interrupt_when_ready(
        [*IGNORING_SIGINT, *ONECARD, "detect", "train", "--data", str(data), "--model", "yolov8n.yaml", "--epochs",
         "3", "--imgsz", "96", "--batch", "8", "--workers", "0", "--no-plots",
         *common],
        lambda: list(runs.glob("*/train/weights/last.pt")), wait_s=300, env=trained["env"])
    assert returncode == 130, stderr[-2000:]
    run_dir = next(runs.glob("*/train/weights/last.pt")).parents[2]
    record = _record(run_dir)
    assert record["status"] == "interrupted" and "--resume" in stderr
    last = run_dir / "train" / "weights" / "last.pt"
    YOLO(str(last))  # loads: the last whole epoch
    import torch

    done = torch.load(last, weights_only=False)["epoch"] + 1  # the record may lag it by the epoch being logged
    assert done >= 1 and len(record.get("epochs", [])) in (done - 1, done)
    out = json.loads(_run("detect", "train", "--resume", run_dir.name, *common, "--json", env=trained["env"]).stdout)
    resumed = _record(out["dir"])
    assert resumed["status"] == "succeeded" and resumed["resumed_from"]["run"] == run_dir.name
    assert [e["epoch"] for e in resumed["epochs"]] == list(range(done + 1, 4))


@pytest.mark.slow
def test_export_onnx_runs_and_is_timed_against_pytorch(trained: dict[str, Any]) -> None:
    pytest.importorskip("onnxruntime")
    result = json.loads(_run("detect", "export", trained["out"]["run_id"], "--format", "onnx", "--repeats", "5",
                             "--runs-dir", str(trained["runs"]), "--json", env=trained["env"]).stdout)
    assert result["exported"].endswith("best.onnx") and Path(result["exported"]).stat().st_size > 1_000_000
    assert result["imgsz"] == 128 and set(result["latency"]) == {"pytorch", "onnx"}
    assert all(t["median_ms"] > 0 and t["p90_ms"] >= t["median_ms"] for t in result["latency"].values())
    # both files scored on the run's val split with the same square inputs: the export keeps the accuracy
    assert result["map"]["pytorch"]["map50"] > 0 and abs(result["map50_drop"]) <= 0.01
    # the export is checked by running it: the same val images through both files, ultralytics' NMS, box by box
    assert result["check"]["images"] == 16 and result["check"]["passed"] is True
    recorded = _record(trained["out"]["dir"])  # the figures go into the training run's record
    assert recorded["exports"]["onnx"]["check"] == result["check"]
    assert any(a.get("kind") == "export-onnx" and a["path"] == result["exported"] for a in recorded["artifacts"])
    from onecard.detect.deploy import agreement
    from onecard.detect.run import BEST

    images = sorted((trained["data"].parent / "images" / "val").glob("*.jpg"))
    low = agreement(str(Path(trained["out"]["dir"]) / BEST), Path(result["exported"]), "onnx", images, 128, conf=0.01)
    assert low["boxes"] > 0 and low["passed"] and low["matched"] >= low["boxes"] - 2 and low["min_iou"] > 0.99


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "openvino"])
def test_export_other_formats_are_checked_and_scored(trained: dict[str, Any], fmt: str) -> None:
    if fmt == "openvino":
        pytest.importorskip("openvino")
    result = json.loads(_run("detect", "export", trained["out"]["run_id"], "--format", fmt, "--repeats", "3",
                             "--runs-dir", str(trained["runs"]), "--json", env=trained["env"]).stdout)
    assert result["format"] == fmt and Path(result["exported"]).exists()
    assert result["check"]["passed"] is True and abs(result["map50_drop"]) <= 0.01
    assert set(result["latency"]) == {"pytorch", fmt}


@pytest.mark.slow
def test_bench_prints_a_row_per_format_and_batch_with_the_map_kept(trained: dict[str, Any]) -> None:
    out = _run("detect", "bench", trained["out"]["run_id"], "--formats", "pytorch,onnx,engine", "--batch", "1,4",
               "--repeats", "3", "--runs-dir", str(trained["runs"]), "--json", env=trained["env"])
    result = json.loads(out.stdout)
    assert [(r["format"], r["batch"]) for r in result["rows"]] == [("pytorch", 1), ("pytorch", 4), ("onnx", 1),
                                                                    ("onnx", 4)]
    assert result["skipped"][0]["format"] == "engine" and "CUDA" in result["skipped"][0]["reason"]
    assert abs(result["map"]["pytorch"]["map50"] - result["map"]["onnx"]["map50"]) <= 0.01
    assert all(r["map_map50"] == result["map"][r["format"]]["map50"] for r in result["rows"])
    assert _record(trained["out"]["dir"])["bench"]["cpu"]["rows"] == result["rows"]
    table = _run("detect", "bench", trained["out"]["run_id"], "--formats", "pytorch", "--batch", "1", "--repeats", "2",
                 "--runs-dir", str(trained["runs"]), env=trained["env"]).stdout
    assert "ms/image" in table and "images/s" in table

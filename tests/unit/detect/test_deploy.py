"""Export formats run on their own runtimes and compute what the .pt does; bench times each format and batch and lists
the formats it cannot run, with the reason. A random-weight yolov8n at 64 px (no training, a few seconds per export)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ultralytics")

from onecard.detect.config import BenchConfig  # noqa: E402
from onecard.detect.latency import missing_runtime  # noqa: E402

IMGSZ = 64


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> str:
    from onecard.detect.ultra import setup, yolo

    setup()
    path = tmp_path_factory.mktemp("deploy") / "random.pt"
    yolo("yolov8n.yaml").save(str(path))
    return str(path)


def test_bench_config_takes_comma_separated_lists() -> None:
    config = BenchConfig(run="last", formats=["pytorch,onnx", "engine"], batch="1,8")  # type: ignore[arg-type]
    assert config.formats == ["pytorch", "onnx", "engine"] and config.batch == [1, 8]
    with pytest.raises(ValueError, match="batch sizes must be 1 or more"):
        BenchConfig(run="last", batch=[0])


def test_tensorrt_without_cuda_and_a_missing_runtime_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "CUDA GPU" in (missing_runtime("engine", "cpu") or "")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "openvino" else real(name))
    assert missing_runtime("openvino", "cpu") == "openvino is not installed (pip install openvino)"
    assert missing_runtime("torchscript", "cpu") is None


@pytest.mark.parametrize("fmt", ["torchscript", "onnx", "openvino"])
def test_each_export_computes_what_the_pt_does(weights: str, fmt: str, tmp_path: Path) -> None:
    import numpy as np

    from onecard.detect.latency import export, runner

    if missing_runtime(fmt, "cpu"):
        pytest.skip(missing_runtime(fmt, "cpu"))
    path = export(weights, fmt, IMGSZ, batch=2, out=tmp_path / f"random-b2.{fmt}")
    x = np.random.default_rng(0).random((2, 3, IMGSZ, IMGSZ), dtype=np.float32)
    ref, out = runner(Path(weights), "pytorch")(x), runner(path, fmt)(x)
    assert out.shape == ref.shape == (2, 84, (IMGSZ // 8) ** 2 + (IMGSZ // 16) ** 2 + (IMGSZ // 32) ** 2)
    assert np.abs(out - ref).max() <= 1e-3 * max(1.0, float(np.abs(ref).max()))


def test_bench_times_each_format_and_batch_and_skips_what_cannot_run(weights: str) -> None:
    from onecard.detect.deploy import bench

    result = bench(BenchConfig(run=weights, formats=["pytorch", "onnx", "engine"], batch=[1, 2], imgsz=IMGSZ,
                               warmup=1, repeats=3, threads=1))
    assert [(r["format"], r["batch"]) for r in result["rows"]] == [("pytorch", 1), ("pytorch", 2), ("onnx", 1),
                                                                    ("onnx", 2)]
    assert result["skipped"] == [{"format": "engine", "reason": "TensorRT runs on a CUDA GPU only (device: cpu)"}]
    for r in result["rows"]:
        assert r["p90_ms"] >= r["median_ms"] > 0 and r["images_per_s"] == pytest.approx(1000 / r["median_ms"])
        assert r["threads"] == 1 and r["vs_pytorch"] > 0
    assert result["map"] == {} and "--data" in result["map_note"]  # a bare .pt has no val split


def test_an_export_to_another_place_leaves_the_one_beside_the_weights(weights: str, tmp_path: Path) -> None:
    import hashlib

    from onecard.detect.latency import export

    beside = export(weights, "onnx", IMGSZ)  # what `detect export` writes (and records)
    assert beside == Path(weights).with_suffix(".onnx")
    digest = hashlib.sha256(beside.read_bytes()).hexdigest()
    out = export(weights, "onnx", IMGSZ, batch=2, out=tmp_path / "bench" / "random-b2.onnx")  # what bench writes
    assert out == tmp_path / "bench" / "random-b2.onnx" and out.is_file()
    assert hashlib.sha256(beside.read_bytes()).hexdigest() == digest
    assert [p.name for p in out.parent.iterdir()] == ["random-b2.onnx"]  # the weights' copy is gone

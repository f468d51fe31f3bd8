"""train()'s out-of-memory path with ultralytics stood in for: the ladder's step is taken, recorded, and training
resumes from this run's last.pt with the smaller batch (a CPU cannot run out of GPU memory on cue)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")

from onecard.detect import run  # noqa: E402
from onecard.detect.config import DetectConfig  # noqa: E402
from onecard.detect.synthetic import make_shapes  # noqa: E402


class FakeYOLO:
    """Records each `train(**args)`; the first one writes last.pt (an epoch done) and runs out of GPU memory."""

    calls: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, model: str) -> None:
        self.source = model
        self.model = SimpleNamespace(yaml={"yaml_file": "yolov8n.yaml"})

    def add_callback(self, event: str, fn: Any) -> None:
        pass

    def train(self, **args: Any) -> None:
        FakeYOLO.calls.append((self.source, args))
        if len(FakeYOLO.calls) == 1:
            weights = Path(args["project"]) / args["name"] / "weights"
            weights.mkdir(parents=True, exist_ok=True)
            (weights / "last.pt").write_bytes(b"epoch 1")
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.trainer = SimpleNamespace(metrics={"metrics/mAP50(B)": 0.5, "metrics/mAP50-95(B)": 0.3},
                                       batch_size=args["batch"], args=SimpleNamespace(imgsz=args["imgsz"]), amp=False)


def test_an_oom_steps_down_fits_ladder_and_resumes_from_this_runs_last_pt(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "yolo", FakeYOLO)
    FakeYOLO.calls = []
    data = make_shapes(tmp_path / "shapes", train=4, val=2, size=64)
    config = DetectConfig(data=str(data), model="yolov8n.yaml", gpu="4070ti", imgsz=640, device="cpu")
    trained = run.train(config, str(tmp_path / "runs"), report_to=())
    (first, a), (second, b) = FakeYOLO.calls
    record = json.loads((trained.dir / "run.json").read_text())
    assert first == "yolov8n.yaml" and "resume" not in a
    assert second == str(trained.dir / "train" / "weights" / "last.pt") and b["resume"] is True
    assert b["batch"] == a["batch"] // 2 and a["batch"] == record["oom_steps"][0]["settings"]["batch"] * 2
    assert record["oom_steps"][0]["change"].startswith("batch") and "CUDA out of memory" in record["oom_steps"][0][
        "error"]
    assert record["metrics"]["map50"] == 0.5 and record["metrics"]["oom_steps"] == 1
    assert record["plan"]["source"].startswith("fit:") and record["plan"]["batch"] == a["batch"]

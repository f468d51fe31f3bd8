"""The safe bound: its job kinds, bounds.json and the rule that writes it, and what each runtime's bound means."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from onecard.fit import bound
from onecard.fit.job import FitJob
from onecard.fit.plan import plan, resolve_arch

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"


def _fit_bounds(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # fit_bounds imports fit_accuracy from beside it
    spec = importlib.util.spec_from_file_location("fit_bounds", BENCHMARKS / "fit_bounds.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fit_bounds", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("job", "kind"), [
    (FitJob(model="llama-3.1-8b", job="infer"), "llm-infer"),
    (FitJob(model="llama-3.1-8b", job="train"), "llm-train"),
    (FitJob(model="tinylm-baby", job="train"), "tinylm"),
    (FitJob(model="sdxl", job="infer"), "diffusion-infer"),
    (FitJob(model="sd15", job="train"), "diffusion-train"),
    (FitJob(model="yolov8s", job="train"), "yolo-train"),
    (FitJob(model="whisper-large-v3", job="infer"), "whisper-infer"),
])
def test_the_kind_is_named_from_the_job(job: FitJob, kind: str) -> None:
    assert resolve_arch(job.model).kind(job) == kind


def test_bounds_json_gives_every_kind_a_margin_with_its_reason() -> None:
    data = bound.bounds()
    assert data["written_by"] == "python benchmarks/fit_bounds.py" and "development" in data["cases"]
    assert data["kinds"] and data["default"]["margin"] >= max(k["margin"] for k in data["kinds"].values())
    assert set(data["kinds"]) >= {"llm-infer", "llm-train", "tinylm", "diffusion-infer", "diffusion-train",
                                  "yolo-infer", "yolo-train", "whisper-infer", "whisper-train"}
    for kind, entry in data["kinds"].items():
        m = bound.margin(kind)
        assert m.margin == entry["margin"] >= 0.05 and m.cases == entry["cases"] and m.rule
        if entry["cases"]:
            assert entry["margin"] >= entry["worst_under"], f"{kind}: the bound covers its worst development case"
        else:
            assert entry["margin"] >= 0.15 and "no scored case" in entry["rule"]
    unseen = bound.margin("no-such-kind")
    assert unseen.cases == 0 and unseen.margin == data["default"]["margin"]


def test_margin_rule_worst_case_with_floors(monkeypatch: pytest.MonkeyPatch) -> None:
    fb = _fit_bounds(monkeypatch)
    data = fb.margins({
        "llm-train": [(f"c{i}", e) for i, e in enumerate([0.02, -0.10, 0.121, 0.0, -0.3])],  # worst 12.1 %
        "llm-infer": [(f"i{i}", -0.05) for i in range(6)],  # only over-predicted: the 5 % floor
        "yolo-train": [("y0", 0.02)],  # one case: the 15 % floor
    })
    kinds = data["kinds"]
    assert kinds["llm-train"]["margin"] == 0.125 and kinds["llm-train"]["worst_case"] == "c2"  # up to 0.5 %
    assert kinds["llm-infer"]["margin"] == 0.05 and "floor" in kinds["llm-infer"]["rule"]
    assert kinds["yolo-train"]["margin"] == 0.15 and "under 5" in kinds["yolo-train"]["rule"]
    # no case: the family's largest (tinylm from llm-train), else the largest of all, at least 15 %
    assert kinds["tinylm"]["margin"] == 0.15 and kinds["tinylm"]["cases"] == 0
    assert "llm-train" in kinds["tinylm"]["rule"]
    assert kinds["yolo-infer"]["margin"] == 0.15 and kinds["diffusion-train"]["margin"] == 0.15
    assert data["default"]["margin"] == 0.15
    wide = fb.margins({"llm-train": [(f"c{i}", 0.3) for i in range(5)], "yolo-train": [("y", 0.4)]})["kinds"]
    assert (wide["tinylm"]["margin"], wide["yolo-infer"]["margin"], wide["whisper-infer"]["margin"]) == (0.3, 0.4, 0.4)


def test_the_bound_script_never_reads_held_out_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    fb = _fit_bounds(monkeypatch)
    read: list[Path] = []
    real = fb.fit_accuracy.load

    def spy(folders: list[Path]) -> list[dict[str, Any]]:
        read.extend(folders)
        return real(folders)

    monkeypatch.setattr(fb.fit_accuracy, "load", spy)
    by_kind = fb.errors()
    assert read and not any("heldout" in str(f) for f in read)
    assert {"llm-infer", "llm-train"} <= set(by_kind)


def test_a_recorded_held_out_scoring_widens_the_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    fb = _fit_bounds(monkeypatch)
    record = {"heldout": [
        {"id": "seen-once", "job_kind": "llm-infer", "kind": "process", "measured_gib": 12.0, "predicted_gib": 10.0,
         "scored": True},
        {"id": "part", "job_kind": "llm-infer", "kind": "part:weights", "measured_gib": 9.0, "predicted_gib": 1.0,
         "scored": True},
        {"id": "left-out", "job_kind": "llm-infer", "kind": "process", "measured_gib": 9.0, "predicted_gib": 1.0,
         "scored": False}]}
    monkeypatch.setattr(fb.fit_accuracy, "recorded", lambda split: record.get(split))  # heldout2: not yet scored
    by_kind = fb.errors()
    unseen = [(cid, e) for cid, e in by_kind["llm-infer"] if cid in {"seen-once", "part", "left-out"}]
    assert unseen == [("seen-once", pytest.approx(0.2))]  # a part or an unscored case is no peak error
    assert fb.margins(by_kind)["kinds"]["llm-infer"]["margin"] == 0.2


def test_vllm_peak_is_its_reservation_and_llama_cpp_layers_fit_the_bound(
        set_margins: Callable[[float], None]) -> None:
    set_margins(0.3)
    vllm = plan(FitJob(model="llama-3.1-8b", runtime="vllm", quant="awq", gpu="4090"))
    assert vllm.margin is bound.RESERVED and vllm.peak_upper_gib == pytest.approx(vllm.estimate.process_gib)
    gguf = plan(FitJob(model="llama-2-13b", runtime="llama.cpp", quant="q8_0", ctx=8192, gpu="rtx-3060"))
    assert gguf.fits and gguf.peak_upper_gib == pytest.approx(1.3 * gguf.estimate.process_gib)
    set_margins(0.0)
    assert plan(gguf.job).estimate.gpu_layers > gguf.estimate.gpu_layers  # type: ignore[operator]


def test_a_plan_without_a_card_is_still_bounded(monkeypatch: pytest.MonkeyPatch,
                                                set_margins: Callable[[float], None]) -> None:
    from onecard.fit import plan as planning

    set_margins(0.2)
    monkeypatch.setattr(planning, "resolve_card", lambda job: None)
    p = planning.plan(FitJob(model="llama-3.1-8b", job="train"))
    assert p.fits is None and p.peak_upper_gib == pytest.approx(1.2 * p.estimate.process_gib)

"""The case files of benchmarks/fit_cases keep benchmarks/fit_accuracy.py's scoring rule, and its summary counts what
the issue's targets name. Nothing here plans a held-out case: loading only reads the YAML."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).parents[3] / "benchmarks" / "fit_accuracy.py"
_spec = importlib.util.spec_from_file_location("fit_accuracy", BENCH)
assert _spec is not None and _spec.loader is not None
fit_accuracy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fit_accuracy)


def _row(cid: str, error: float, upper: float | None = None, kind: str = "process",
         scored: bool = True) -> dict[str, Any]:
    return {"id": cid, "kind": kind, "measured_gib": 10.0, "predicted_gib": 10.0 * (1 + error), "upper_gib": upper,
            "error": error, "scored": scored, "source": "test"}


def test_every_case_file_keeps_the_rule() -> None:
    cases = fit_accuracy.load(fit_accuracy.DEV + fit_accuracy.HELDOUT)
    assert len({c["id"] for c in cases}) == len(cases)
    left_out = [c for c in cases if not fit_accuracy.scored(c)]
    assert all(c.get("duplicate_of") or fit_accuracy.NOT_SCORED.match(c["note"]) for c in left_out)


def test_one_sdxl_figure_is_scored_once() -> None:
    cases = {c["id"]: c for c in fit_accuracy.load([fit_accuracy.CASES])}
    row34 = [c for c in cases.values() if c["id"].startswith("C34-sdxl-fp16")]
    assert [c["id"] for c in row34 if fit_accuracy.scored(c)] == ["C34-sdxl-fp16-default-attn-b4"]


def test_a_left_out_case_must_name_its_rule(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "- {id: a, source: s, job: {model: sd15}, measured_gib: 1.0, kind: process, predictable: false,\n"
        "   note: big error}\n")
    with pytest.raises(SystemExit, match="NOT SCORED"):
        fit_accuracy.load([tmp_path])


def test_a_duplicate_must_repeat_a_scored_figure(tmp_path: Path) -> None:
    (tmp_path / "dup.yaml").write_text(
        "- {id: a, source: s, job: {model: sd15}, measured_gib: 1.0, kind: process}\n"
        "- {id: b, source: s, job: {model: sd15}, measured_gib: 2.0, kind: process, duplicate_of: a}\n")
    with pytest.raises(SystemExit, match="one measurement"):
        fit_accuracy.load([tmp_path])


def test_summary_worst_under_prediction_and_coverage() -> None:
    rows = [_row("over", 0.30, upper=14.0), _row("under", -0.20, upper=11.0), _row("fine", 0.01, upper=9.0),
            _row("ignored", -0.90, scored=False), _row("part", -0.10, kind="part:weights")]
    result = fit_accuracy.summary(rows)
    assert result["scored"] == 4 and result["worst_under_case"] == "under"  # a part is a scored case too
    assert result["worst_under_error"] == pytest.approx(-0.20)
    assert result["bound_cases"] == 3 and result["bound_coverage"] == pytest.approx(2 / 3)
    assert fit_accuracy.summary([_row("a", 0.1)])["bound_coverage"] is None  # no bound: n/a, not 0 %
    assert result["strict_coverage"] is None  # rows of a record without the first-sight bound
    strict = [r | {"upper_strict_gib": u} for r, u in zip(rows, (14.0, 9.5, 10.5, None, None), strict=True)]
    assert fit_accuracy.summary(strict)["strict_coverage"] == pytest.approx(2 / 3)  # under: 9.5 < 10


def test_a_case_the_planner_refuses_is_a_row_without_a_figure_and_never_scored(capsys: pytest.CaptureFixture[str]
                                                                                ) -> None:
    case = {"id": "w8a8", "source": "s", "kind": "part:weights", "measured_gib": 8.49,
            "job": {"model": "llama-3.1-8b", "job": "infer", "runtime": "vllm", "quant": "int8", "gpu": "h100-sxm"}}
    row = fit_accuracy.run_case(case)
    assert row["predicted_gib"] is None and row["scored"] is False and "vLLM" in row["refused"]
    result = fit_accuracy.summary([row, _row("fine", 0.01, upper=9.0)])
    assert result["scored"] == 1 and result["median_abs_error"] == pytest.approx(0.01)
    fit_accuracy.print_table("split", [row], result)
    # a model the planner cannot resolve offline (a hub id not in the cache) is refused the same way, not a crash
    unknown = fit_accuracy.run_case({**case, "id": "hub", "kind": "allocated",
                                     "job": {"model": "nobody/not-a-cached-model-xyz", "job": "infer"}})
    assert unknown["predicted_gib"] is None and unknown["scored"] is False and unknown["refused"]
    assert "the planner refuses it" in capsys.readouterr().out


def test_a_held_out_split_is_planned_once_then_printed_from_its_record(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    split = tmp_path / "split"
    split.mkdir()
    (split / "c.yaml").write_text(
        "- {id: a, source: s, job: {model: yolov8n, job: train, gpu: t4}, measured_gib: 1.0, kind: reserved}\n")
    monkeypatch.setattr(fit_accuracy, "HELDOUT_SPLITS", {"late": split})
    monkeypatch.setattr(fit_accuracy, "record_file", lambda name: tmp_path / f"{name}_scored.json")
    assert fit_accuracy.recorded("late") is None and fit_accuracy.spent() == []
    first = fit_accuracy.heldout_rows("late")
    assert [r["id"] for r in first] == ["a"] and (tmp_path / "late_scored.json").exists()
    assert fit_accuracy.spent() == ["late"]

    def planned_again(case: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("a scored split is not planned again")

    monkeypatch.setattr(fit_accuracy, "run_case", planned_again)
    again = fit_accuracy.heldout_rows("late")
    assert [(r["id"], r["predicted_gib"], r["error"]) for r in again] == [
        (r["id"], r["predicted_gib"], r["error"]) for r in first]


def test_the_whole_set_is_read_as_recorded_and_as_planned_now(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import json

    dev, split = tmp_path / "dev", tmp_path / "split"
    dev.mkdir(), split.mkdir()
    (dev / "c.yaml").write_text(
        "- {id: d, source: s, job: {model: yolov8n, job: train, gpu: t4}, measured_gib: 2.0, kind: reserved}\n")
    (split / "c.yaml").write_text(
        "- {id: h, source: s, job: {model: yolov8n, job: train, gpu: t4}, measured_gib: 2.0, kind: reserved}\n")
    monkeypatch.setattr(fit_accuracy, "DEV", [dev])
    monkeypatch.setattr(fit_accuracy, "HELDOUT_SPLITS", {"late": split})
    monkeypatch.setattr(fit_accuracy, "record_file", lambda name: tmp_path / f"{name}_scored.json")
    # the split's one scoring, by an older planner that said 1.0 GiB (-50%)
    (tmp_path / "late_scored.json").write_text(json.dumps({"date": "2026-12-06", "commit": "x", "rows": [
        {"id": "h", "kind": "reserved", "measured_gib": 2.0, "predicted_gib": 1.0, "upper_gib": 1.5, "error": -0.5,
         "scored": True, "job_kind": "yolo-train"}]}))
    monkeypatch.setattr("sys.argv", ["fit_accuracy.py", "--heldout", "--json"])
    fit_accuracy.main()
    out = json.loads(capsys.readouterr().out)
    assert out["heldout"]["late"]["summary"]["worst_under_error"] == pytest.approx(-0.5)  # the record, as scored
    planned = out["rows"][0]["error"]  # today's planner on the same job (dev and split hold the same job and figure)
    assert planned != pytest.approx(-0.5)
    assert out["whole_summary"]["worst_under_error"] == pytest.approx(min(planned, -0.5))
    assert out["whole_now_summary"]["scored"] == 2
    assert out["whole_now_summary"]["worst_under_error"] == pytest.approx(min(planned, 0.0))
    assert out["whole_now_summary"]["median_abs_error"] == pytest.approx(abs(planned))
    assert {"whole_median_recorded", "whole_median_now", "late_median"} <= set(out["targets_met"])


def test_a_device_wide_nvml_reading_holds_what_the_driver_keeps() -> None:
    from onecard.core.gpus import lookup
    from onecard.fit.estimate import Estimate

    est = Estimate(parts={"weights": 10.0}, slack_gib=0.0, context_gib=0.45)
    a100 = lookup("a100-80gb")
    assert fit_accuracy.predicted(est, "process", a100) == pytest.approx(10.45)
    assert fit_accuracy.predicted(est, "device", a100) == pytest.approx(10.45 + a100.driver_reserved_gib)
    assert a100.driver_reserved_gib == pytest.approx(0.86, abs=0.01)


def test_an_empty_split_is_not_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(fit_accuracy, "HELDOUT_SPLITS", {"empty": tmp_path / "empty"})
    monkeypatch.setattr(fit_accuracy, "record_file", lambda name: tmp_path / f"{name}_scored.json")
    assert fit_accuracy.heldout_rows("empty") == [] and not (tmp_path / "empty_scored.json").exists()
    assert fit_accuracy.spent() == []


def test_an_allocated_plus_context_reading_holds_no_slack_nor_cache() -> None:
    """huggingface/optimum's GPTQ benchmark adds nvidia-smi's peak less torch's reserved peak to the allocated peak."""
    from onecard.core.gpus import lookup
    from onecard.fit.estimate import Estimate

    est = Estimate(parts={"weights": 10.0}, slack_gib=0.5, context_gib=0.45, cache_gib=3.0)
    a100 = lookup("a100-80gb")
    assert fit_accuracy.predicted(est, "allocated+context", a100) == pytest.approx(10.45)
    assert fit_accuracy.predicted(est, "process", a100) == pytest.approx(13.95)

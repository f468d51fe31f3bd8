"""The safe bound: its job kinds, bounds.json and the rule that writes it, and what each runtime's bound means."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from onecard.fit import bound
from onecard.fit.job import FitJob
from onecard.fit.plan import plan, resolve_arch


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
        assert m.margin == entry["margin"] >= 0.05 and m.abs_gib == entry["abs_gib"] >= 0 and m.rule
        assert m.cases == entry["cases"]
        if not entry["cases"]:
            assert entry["margin"] >= 0.15 and "no scored case" in entry["rule"]
    for group, entry in data["groups"].items():  # a group keeps its own bound only with cases enough
        kind = group.split("/")[0]
        assert entry["cases"] >= 5 and entry["sources"] >= 20 and bound.margin(kind, group).group == group
    assert bound.margin("llm-train", "llm-train/no-such-stack").group == ""  # else the kind's
    unseen = bound.margin("no-such-kind")
    assert unseen.cases == 0 and unseen.margin == data["default"]["margin"]


def test_the_bound_covers_every_case_and_is_lowest_at_a_12_gb_budget(
        load_benchmark: Callable[[str], ModuleType]) -> None:
    fb = load_benchmark("fit_bounds")
    # a big job 20 % under and a small one 100 % under (1 GiB of workspaces): a fixed part covers the small one
    # without doubling the big one's bound
    mixed = fb.fit_bound([("big", 10.0, 12.0, "a"), ("small", 1.0, 2.0, "b")], 0.05)
    assert (mixed["margin"], mixed["abs_gib"]) == (0.05, pytest.approx(1.5)) and mixed["binding"] == ["big"]
    for _, p, m in [("big", 10.0, 12.0), ("small", 1.0, 2.0)]:
        assert p * (1 + mixed["margin"]) + mixed["abs_gib"] >= m
    # an error that grows with the job stays relative
    relative = fb.fit_bound([("a", 10.0, 11.0, "a"), ("b", 20.0, 22.0, "b"), ("c", 5.0, 4.0, "c")], 0.05)
    assert (relative["margin"], relative["abs_gib"]) == (pytest.approx(0.1), 0.0)
    assert relative["worst_case"] in {"a", "b"} and relative["worst_under"] == pytest.approx(0.1)


def test_each_source_weighs_one_however_many_cases_it_has(load_benchmark: Callable[[str], ModuleType]) -> None:
    fb = load_benchmark("fit_bounds")
    # 20 sources of one case each, 19 within 10 %, and a 20th source's 10 rows of which 2 read 3x: the bound may
    # leave 5 % of 21 sources' weight above it, 2 of 10 rows of one source (0.2), not a whole source
    good = [(f"g{i}", 10.0, 10.0 * (1 + i / 200), f"g{i}") for i in range(20)]
    harness = [(f"h{i}", 10.0, 10.5, "h") for i in range(8)] + [("h8", 10.0, 30.0, "h"), ("h9", 10.0, 29.0, "h")]
    fitted = fb.fit_bound(good + harness, 0.05)
    assert fitted["sources"] == 21 and set(fitted["uncovered"]) == {"h8", "h9"}
    assert fitted["margin"] * 10 + fitted["abs_gib"] < 1.0  # covered by about 10 %, not 3x
    # counted as 30 independent rows, the two would be 6.7 % of them: one of them must be covered
    alone = fb.fit_bound([(cid, p, m, cid) for cid, p, m, _ in good + harness], 0.05)
    assert alone["uncovered"] == ["h8"] and alone["margin"] * 10 + alone["abs_gib"] >= 18.9


def test_margin_floors_and_kinds_without_cases(load_benchmark: Callable[[str], ModuleType]) -> None:
    fb = load_benchmark("fit_bounds")
    data = fb.margins({
        "llm-train": [(f"c{i}", 20.0, 20.0 * f, f"s{i}") for i, f in enumerate([1.02, 0.9, 1.121, 1.0, 0.7])],
        "llm-infer": [(f"i{i}", 10.0, 9.5, f"s{i}") for i in range(6)],  # only over-predicted: the 5 % floor
        "yolo-train": [("y0", 1.0, 1.02, "s")],  # one case: the 15 % floor
    })
    kinds = data["kinds"]
    assert kinds["llm-train"]["margin"] == pytest.approx(0.125) and kinds["llm-train"]["abs_gib"] == 0.0  # to 0.5 %
    assert kinds["llm-train"]["worst_case"] == "c2" and kinds["llm-train"]["binding"] == ["c2"]
    assert kinds["llm-infer"]["margin"] == 0.05 and kinds["llm-infer"]["abs_gib"] == 0.0
    assert kinds["yolo-train"]["margin"] == 0.15 and "under 5" in kinds["yolo-train"]["rule"]
    # no case: the widest of its family (tinylm from llm-train), else of all kinds, margin at least 15 %
    assert kinds["tinylm"]["margin"] == 0.15 and kinds["tinylm"]["cases"] == 0
    assert "llm-train" in kinds["tinylm"]["rule"]
    assert kinds["yolo-infer"]["margin"] == 0.15 and kinds["diffusion-train"]["margin"] == 0.15
    assert data["default"]["margin"] == 0.15 and data["groups"] == {}
    tt = [(f"t{i}", 20.0, 26.0, f"t{i}") for i in range(20)]
    tf = [(f"o{i}", 20.0, 21.0, f"o{i}") for i in range(20)]
    # a group of four sources: its bound would be its worst source's (95 % of 4 sources' weight is all of it)
    few = [(f"f{i}", 20.0, 20.0 if i else 34.0, f"f{i // 5}") for i in range(20)]
    grouped = fb.margins({"llm-train": tt + tf + few}, {
        "llm-train/torchtune": tt, "llm-train/transformers": tf, "llm-train/unsloth": few,
        "llm-train/litgpt": [("l", 20.0, 20.0, "l")]})  # too few cases or sources: the kind's
    assert grouped["kinds"]["llm-train"]["margin"] == pytest.approx(0.3)
    assert set(grouped["groups"]) == {"llm-train/torchtune", "llm-train/transformers"}
    assert grouped["groups"]["llm-train/transformers"]["margin"] == pytest.approx(0.05)
    assert grouped["first_sight"] is None  # no held-out record given


def test_the_first_sight_bound_pools_every_kind_and_strict_decides_on_it(
        load_benchmark: Callable[[str], ModuleType]) -> None:
    fb = load_benchmark("fit_bounds")
    # first sight: 20 sources, one of them 50 % under: 95 % of 20 sources' weight leaves it out, 21 would not
    first = [(f"r{i}", 10.0, 10.0, f"s{i}") for i in range(19)] + [("miss", 10.0, 15.0, "s19")]
    data = fb.margins({"llm-train": [("c", 10.0, 10.0, "c")]}, None, first)
    assert data["first_sight"]["cases"] == 20 and data["first_sight"]["uncovered"] == ["miss"]
    assert "never seen" in data["first_sight"]["rule"]
    tighter = fb.margins({"llm-train": [("c", 10.0, 10.0, "c")]}, None, [*first, ("miss2", 10.0, 12.0, "s20")])
    assert tighter["first_sight"]["margin"] * 10 + tighter["first_sight"]["abs_gib"] >= 2.0
    # the planner: --strict decides on the first-sight bound, and every answer names it
    from onecard.fit import report

    job = FitJob(model="llama-3.1-8b", job="train", method="qlora", stack="onecard", gpu="4070ti")
    default, strict = plan(job), plan(job.model_copy(update={"strict": True}))
    first_sight = bound.first_sight("llm-train")
    assert strict.margin is not None and strict.margin.group == "first sight"
    assert strict.peak_upper_gib == pytest.approx(first_sight.upper(strict.estimate.process_gib))
    assert strict.fits == (strict.peak_upper_gib <= strict.budget_gib)  # type: ignore[operator]
    assert default.estimate.process_gib == strict.estimate.process_gib  # the estimate is the same
    out = report.to_json(default)
    assert out["peak_upper_first_sight_gib"] == pytest.approx(strict.peak_upper_gib, abs=1e-3)
    note = report.strict_note(default) or ""
    assert re.search(r"--strict decides on (\d+\.\d+) GiB instead \((within|over) the (\d+\.\d+) budget\)", note)
    said = re.search(r"decides on (\d+\.\d+) GiB", note)
    assert said and float(said.group(1)) == pytest.approx(strict.peak_upper_gib, abs=0.051)
    assert ("within" in note) == strict.fits  # the note says what --strict would decide
    assert "--strict" in (report.bound_note(strict) or "") and report.strict_note(strict) is None


def test_the_bound_script_never_reads_a_split_before_its_scoring_and_plans_spent_ones_now(
        monkeypatch: pytest.MonkeyPatch, load_benchmark: Callable[[str], ModuleType]) -> None:
    fb = load_benchmark("fit_bounds")
    read: list[Path] = []
    real = fb.fit_accuracy.load

    def spy(folders: list[Path]) -> list[dict[str, Any]]:
        read.extend(folders)
        return real(folders)

    monkeypatch.setattr(fb.fit_accuracy, "load", spy)
    monkeypatch.setattr(fb.fit_accuracy, "spent", lambda: ["heldout"])  # as before any split but the first was scored
    by_kind, by_group = fb.errors()
    unscored = [folder for split, folder in fb.fit_accuracy.HELDOUT_SPLITS.items() if split != "heldout"]
    assert read and not any(folder in read for folder in unscored)
    # a scored split is development data, planned now: the first split's AWQ Falcon row (recorded 3.92 GiB predicted
    # for 4.47 measured) with today's estimate, in its kind and group
    rows = {r[0]: r for r in by_kind["llm-infer"]}
    falcon = rows["P-awq-falcon7b-gemm-b1-64"]
    assert falcon[2:] == (4.47, "heldout/awq") and falcon in by_group["llm-infer/autoawq"]
    from onecard.fit.job import FitJob
    from onecard.fit.plan import plan

    case = next(c for c in real([fb.fit_accuracy.HELDOUT_SPLITS["heldout"]]) if c["id"] == falcon[0])
    assert falcon[1] == pytest.approx(plan(FitJob(**case["job"], calibration=False)).estimate.peak_allocated_gib)
    assert {"llm-infer", "llm-train"} <= set(by_kind)


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


def test_the_backtest_fits_on_earlier_splits_only_and_tests_the_next(
        load_benchmark: Callable[[str], ModuleType]) -> None:
    bt = load_benchmark("fit_bound_backtest")

    def row(cid: str, measured: float, upper: float | None, kind: str = "llm-infer") -> dict[str, Any]:
        return {"id": cid, "job_kind": kind, "predicted_gib": 10.0, "measured_gib": measured, "upper_gib": upper,
                "src": cid}

    # the first split: 20 sources, one 30 % under; the second: two 25 % under; the third: one 60 % under
    first = [row(f"a{i}", 10.0, 10.5) for i in range(19)] + [row("a-miss", 13.0, 10.5)]
    second = [row("b1", 12.5, 11.0), row("b2", 12.5, 11.0), row("b3", 9.0, 11.0)]
    third = [row("c1", 16.0, 11.0), row("c2", 10.0, 11.0)]
    result = bt.backtest({"s1": first, "s2": second, "s3": third})
    assert result["shipped"] == [(1, 3), (1, 2)]  # the bound each record holds
    # fitted on s1 alone it may leave a-miss (1 of 20 sources) above it: 25 % under is not covered then
    assert result["first-sight"][0] == (1, 3)
    # fitted on s1 + s2 (23 sources, 1.15 of weight may stay above): b1/b2 push it to 25 %, c1 stays out
    assert result["first-sight"][1] == (1, 2)
    assert bt.covers({"*": (0.6, 0.0)}, third[0]) and not bt.covers({"*": (0.5, 0.0)}, third[0])

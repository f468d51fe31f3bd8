"""A user who feeds real measurements back sees the planner improve on their card, and only there.

The observations are synthetic with a known bias: the measured figure is the planner's own uncalibrated figure times
1.2 (with +-3 % run-to-run noise), as if this card's driver or library held a fifth more than the model counts.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from onecard.core.errors import DataError
from onecard.core.gpus import lookup
from onecard.fit import bound, observations
from onecard.fit.calibrate import MIN_OBSERVATIONS, calibrate, fit_groups
from onecard.fit.job import FitJob
from onecard.fit.plan import plan, resolve_arch

BIAS = 1.2
NOISE = (1.0, 1.03, 0.97, 1.01, 0.99)
TRAIN = dict(model="llama-3.1-8b", job="train", method="qlora")


def _observe(card: str, noise: tuple[float, ...], bias: float = BIAS, **job: object) -> None:
    """One observation per noise factor, each a different sequence length, measured at `bias` x the reserved peak."""
    found = []
    for i, n in enumerate(noise):
        fit_job = FitJob(**job | {"seq": 512 * (i + 1), "gpu": card})  # type: ignore[arg-type]
        resolved = resolve_arch(fit_job.model)
        est = resolved.estimate(fit_job, lookup(card))
        found.append(observations.of_estimate(lookup(card).key, resolved.kind(fit_job), fit_job, est, "reserved",
                                              est.peak_reserved_gib * bias * n, "synthetic",
                                              group=resolved.group(fit_job)))
    observations.append(found)


def test_calibrate_moves_the_prediction_toward_the_measurements_on_that_card_only() -> None:
    _observe("4070ti", NOISE, **TRAIN)
    _observe("rtx-3060", NOISE[:MIN_OBSERVATIONS - 1], **TRAIN)  # too few for a correction
    request = FitJob(**TRAIN | {"seq": 1024, "gpu": "4070ti"})  # type: ignore[arg-type]
    other_card = FitJob(**TRAIN | {"seq": 1024, "gpu": "rtx-3060"})  # type: ignore[arg-type]
    other_kind = FitJob(model="llama-3.1-8b", job="infer", quant="nf4", gpu="4070ti")
    before = {job.gpu + job.job: plan(job).estimate.process_gib for job in (request, other_card, other_kind)}

    result = calibrate()

    by_card = {g.card: g for g in result.groups}
    assert set(by_card) == {"rtx-4070-ti", "rtx-3060"}  # catalog keys
    fitted = by_card["rtx-4070-ti"]
    assert fitted.kind == "llm-train/transformers" and fitted.scale == pytest.approx(BIAS * 1.0, rel=0.01)  # noise 1.0
    assert by_card["rtx-3060"].scale is None
    # the error moved on the observations, measured leave-one-out: about -17 % before, within the noise after
    summary = result.to_json()["groups"][[g["card"] for g in result.to_json()["groups"]].index("rtx-4070-ti")]
    assert summary["before_median_abs_error"] == pytest.approx(1 - 1 / BIAS, abs=0.02)
    assert summary["after_median_abs_error"] < 0.04 and summary["after_worst_under"] > -0.05

    after = plan(request)
    assert after.calibration is not None and after.calibration.scale == pytest.approx(fitted.scale, rel=1e-3)  # saved
    assert after.estimate.process_gib == pytest.approx(before["4070titrain"] * fitted.scale, rel=1e-3)
    assert after.peak_upper_gib == pytest.approx(after.margin.upper(after.estimate.process_gib))  # type: ignore[union-attr]
    assert any("calibrated on this machine" in a for a in after.estimate.assumptions)
    assert plan(other_card).estimate.process_gib == pytest.approx(before["rtx-3060train"])  # another card
    assert plan(other_kind).estimate.process_gib == pytest.approx(before["4070tiinfer"])  # another kind
    uncalibrated = plan(request.model_copy(update={"calibration": False}))
    assert uncalibrated.calibration is None
    assert uncalibrated.estimate.process_gib == pytest.approx(before["4070titrain"])


def test_a_correction_is_kept_per_stack() -> None:
    """A stack's own runs correct that stack's plans on the card; a stack without enough runs of its own takes its job
    kind's correction there (every stack's runs together), and another kind's plans are left alone."""
    _observe("4070ti", NOISE, **TRAIN)  # the transformers stack (TRL, tune and axolotl build on it): 1.2
    _observe("4070ti", NOISE[:MIN_OBSERVATIONS], **TRAIN | {"stack": "torchtune"}, bias=0.9)
    trl = FitJob(**TRAIN | {"stack": "trl", "gpu": "4070ti"})  # type: ignore[arg-type]
    torchtune = FitJob(**TRAIN | {"stack": "torchtune", "gpu": "4070ti"})  # type: ignore[arg-type]
    unsloth = FitJob(**TRAIN | {"stack": "unsloth", "gpu": "4070ti"})  # type: ignore[arg-type]
    gguf = FitJob(model="llama-3.1-8b", job="infer", quant="q4_k_m", gpu="4070ti")
    jobs = {"trl": trl, "torchtune": torchtune, "unsloth": unsloth, "gguf": gguf}
    before = {name: plan(job).estimate.process_gib for name, job in jobs.items()}

    result = calibrate()

    scales = {g.kind: g.scale for g in result.groups}
    assert scales == {"llm-train/transformers": pytest.approx(BIAS, rel=0.01),
                      "llm-train/torchtune": pytest.approx(0.9, rel=0.01)}
    kind_scale = statistics.median([BIAS * n for n in NOISE] + [0.9 * n for n in NOISE[:MIN_OBSERVATIONS]])
    expected = {"trl": BIAS, "torchtune": 0.9, "unsloth": kind_scale, "gguf": 1.0}
    for name, job in jobs.items():
        assert plan(job).estimate.process_gib == pytest.approx(before[name] * expected[name], rel=0.01), name
    assert plan(gguf).calibration is None  # llm-infer: no observation of that kind on the card


def test_a_calibration_saved_per_kind_still_applies() -> None:
    """A calibration.json written before corrections were kept per stack holds one per job kind: it still applies."""
    path = bound.calibration_file()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"corrections": [{"card": "rtx-4070-ti", "kind": "llm-train", "scale": 1.1,
                                                 "observations": 4}]}))
    planned = plan(FitJob(**TRAIN | {"gpu": "4070ti"}))  # type: ignore[arg-type]
    assert planned.calibration is not None and planned.calibration.scale == 1.1


def test_leave_one_out_cannot_memorize() -> None:
    """With exactly MIN_OBSERVATIONS, no observation has enough others for a correction: after = before."""
    groups = fit_groups([("4070ti", "llm-train", "llm-train/transformers", 1.2)] * MIN_OBSERVATIONS)
    assert groups[0].scale == pytest.approx(1.2) and groups[0].after == groups[0].before
    assert groups[0].untested == 3  # said so in the table's note, not shown as a correction that did nothing
    groups = fit_groups([("4070ti", "llm-train", "llm-train/transformers", r) for r in (1.2, 1.2, 1.2, 5.0)])  # one
    # odd run drags neither the median
    assert groups[0].scale == pytest.approx(1.2) and groups[0].after[:3] == pytest.approx([0.0] * 3)


def test_calibrate_without_observations_keeps_the_earlier_corrections() -> None:
    result = calibrate()
    assert result.groups == [] and result.saved_to is None and not bound.calibration_file().exists()
    assert bound.corrections() == {}
    _observe("4070ti", NOISE, **TRAIN)
    calibrate()
    before = bound.calibration_file().read_text()
    observations.observations_file().unlink()  # moved away, or deleted: the corrections it gave stay
    result = calibrate()
    assert result.saved_to is None and bound.calibration_file().read_text() == before
    assert any("left as it was" in note for note in result.notes)


@pytest.mark.parametrize("scale", ["0", "-1", "NaN", "Infinity", "1e300"])
def test_a_calibration_with_an_impossible_scale_is_refused_by_name(scale: str) -> None:
    path = bound.calibration_file()
    path.parent.mkdir(parents=True)
    path.write_text('{"corrections": [{"card": "rtx-4070-ti", "kind": "llm-train/transformers", "scale": '
                    f'{scale}, "observations": 3}}]}}')
    with pytest.raises(DataError, match="is outside 0.05-20") as info:
        plan(FitJob(**TRAIN | {"gpu": "4070ti"}))  # type: ignore[arg-type]
    assert info.value.fix is not None and str(path) in info.value.fix


def test_an_observation_in_another_unit_is_left_out_of_the_correction() -> None:
    _observe("4070ti", NOISE, **TRAIN)
    _observe("4070ti", (1.0,), bias=1e-3, **TRAIN)  # MiB read as GiB the wrong way round
    result = calibrate()
    assert [g.observations for g in result.groups] == [len(NOISE)]
    assert bound.correction("rtx-4070-ti", "llm-train/transformers") is not None
    assert any("another unit" in note for note in result.notes)


@pytest.mark.parametrize(("field", "value"), [("card", "5"), ("job", "[1, 2]"), ("measured_gib", "Infinity"),
                                              ("measured_gib", '"6"')])
def test_an_observation_of_the_wrong_type_is_named_by_line(field: str, value: str) -> None:
    _observe("4070ti", NOISE[:1], **TRAIN)
    path = observations.observations_file()
    line = json.loads(path.read_text())
    path.write_text(path.read_text() + json.dumps(line).replace(f'"{field}": {json.dumps(line[field])}',
                                                                f'"{field}": {value}') + "\n")
    with pytest.raises(DataError, match=r"line 2: not an observation"):
        calibrate()


def test_a_corrupt_observation_is_named_by_file_and_line() -> None:
    _observe("4070ti", NOISE[:2], **TRAIN)
    path = observations.observations_file()
    with path.open("a", encoding="utf-8") as f:
        f.write('{"card": "4070ti", "kind": "llm-train"\n')  # cut short
    with pytest.raises(DataError, match=rf"{path}, line 3: not an observation") as info:
        calibrate()
    assert info.value.fix is not None and f"fix or delete line 3 of {path}" in info.value.fix
    path.write_text(path.read_text().splitlines(keepends=True)[0] + '{"card": "4070ti"}\n')  # missing fields
    with pytest.raises(DataError, match=r"line 2: not an observation"):
        observations.load()


def test_a_corrupt_calibration_file_says_how_to_rewrite_it() -> None:
    path = bound.calibration_file()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(DataError, match="not a calibration file"):
        plan(FitJob(**TRAIN | {"gpu": "4070ti"}))  # type: ignore[arg-type]


def test_appends_keep_every_line_whole(tmp_path: Path) -> None:
    target = tmp_path / "obs.jsonl"
    fit_job = FitJob(**TRAIN | {"gpu": "4070ti"})  # type: ignore[arg-type]
    resolved = resolve_arch(fit_job.model)
    one = observations.of_estimate("4070ti", "llm-train", fit_job, resolved.estimate(fit_job, lookup("4070ti")),
                                   "allocated", 9.0, "test")
    observations.append([one, one], target)
    observations.append([one], target)
    assert observations.load(target) == [one] * 3
    assert one.fit_job().calibration is False and one.fit_job().gpu == "4070ti"
    custom = observations.Observation(**vars(one) | {"card": "custom-20gib"})
    assert (custom.fit_job().gpu, custom.fit_job().vram) == (None, 20.0)  # an unlisted card: planned by its size


def test_a_tune_run_on_a_gpu_becomes_an_observation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The allocated peak of the training steps is what a run observes: the reserved one also holds the cache a run
    whose sequence lengths vary leaves behind, which the planner does not predict for training."""
    from onecard.core import device

    monkeypatch.setattr(device, "local_gpu", lambda: lookup("4070ti"))
    fit_job = FitJob(**TRAIN | {"stack": "onecard"}).model_dump(mode="json")  # type: ignore[arg-type]
    record = {"id": "tune-1", "capability": "tune", "status": "succeeded", "plan": {"fit_job": fit_job},
              "peak_memory": {"rss_gib": 3.0, "gpu_allocated_gib": 7.1, "gpu_reserved_gib": 7.9}}
    obs = observations.observe_run(record)
    assert obs is not None and (obs.card, obs.kind, obs.figure, obs.measured_gib) == ("rtx-4070-ti", "llm-train",
                                                                                       "allocated", 7.1)
    assert obs.source == "tune run tune-1" and obs.job["stack"] == "onecard" and obs.predicted_gib > 0
    assert observations.load() == [obs]
    # no GPU peak (a CPU run), a run that stepped down the OOM ladder, a failed run: nothing is observed
    assert observations.observe_run(record | {"peak_memory": {"rss_gib": 3.0}}) is None
    assert observations.observe_run(record | {"oom_steps": [{"change": "sequence 2048 -> 1024"}]}) is None
    assert observations.observe_run(record | {"status": "failed"}) is None
    assert len(observations.load()) == 1
    # the training phase's own peak, where the run kept one apart (`Run.gpu_phase`); reserved where alone
    trained = observations.observe_run(record | {"phase_peaks": {"train": {"gpu_allocated_gib": 6.4}}})
    assert trained is not None and (trained.figure, trained.measured_gib) == ("allocated", 6.4)
    alone = observations.observe_run(record | {"peak_memory": {"gpu_reserved_gib": 7.9}})
    assert alone is not None and (alone.figure, alone.measured_gib) == ("reserved", 7.9)


def test_a_run_observes_the_job_it_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tune` pads each batch to its longest row: rows no longer than 600 tokens peak as a 600-token job, however
    long max_seq_length lets them be; the observation plans that job, not the longer one."""
    from onecard.core import device

    monkeypatch.setattr(device, "local_gpu", lambda: lookup("4070ti"))
    fit_job = FitJob(**TRAIN | {"stack": "onecard", "seq": 2048}).model_dump(mode="json")  # type: ignore[arg-type]
    record = {"id": "tune-2", "capability": "tune", "status": "succeeded", "plan": {"fit_job": fit_job},
              "peak_memory": {"gpu_allocated_gib": 6.0}}
    planned, ran = observations.observe_run(record), observations.observe_run(record, ran={"seq": 600})
    assert planned is not None and ran is not None
    assert (planned.job["seq"], ran.job["seq"]) == (2048, 600) and ran.predicted_gib < planned.predicted_gib


def test_a_measure_run_appends_its_peak(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`onecard fit --measure` (no GPU here: the measurement is stood in for) keeps the process figure it read."""
    from onecard.core import device
    from onecard.core.runs import find_run
    from onecard.fit import measure
    from onecard.fit.run import measure_run

    monkeypatch.setattr(device, "local_gpu", lambda: lookup("4070ti"))
    monkeypatch.setattr(measure, "measure", lambda job: measure.Measured(
        peak_allocated_gib=6.0, peak_reserved_gib=6.5, process_gib=7.0, device="NVIDIA GeForce RTX 4070 Ti", steps=3))
    job = FitJob(**TRAIN | {"seq": 1024})  # type: ignore[arg-type]
    _, _, run_id = measure_run(job, runs_root=tmp_path, report_to=())
    (obs,) = observations.load()
    assert (obs.card, obs.kind, obs.figure, obs.measured_gib) == ("rtx-4070-ti", "llm-train", "process", 7.0)
    assert obs.source == f"fit --measure run {run_id}" and obs.fit_job().seq == 1024
    assert find_run(run_id, tmp_path)["observation"]["measured_gib"] == 7.0

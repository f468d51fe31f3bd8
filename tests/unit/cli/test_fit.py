"""`onecard fit`: the bound in its answer, `onecard fit calibrate`, and --no-calibration, through the command table."""

from __future__ import annotations

import json

import pytest

from onecard.cli import main
from onecard.core.gpus import lookup
from onecard.fit import observations
from onecard.fit.job import FitJob
from onecard.fit.plan import resolve_arch

JOB = ["llama-3.1-8b", "--job", "train", "--method", "qlora", "--gpu", "4070ti"]


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:  # type: ignore[type-arg]
    assert main(list(argv)) == 0
    return dict(json.loads(capsys.readouterr().out))


def _observe(scale: float, n: int = 4) -> None:
    card = lookup("4070ti")
    found = []
    for i in range(n):
        job = FitJob(model="llama-3.1-8b", job="train", method="qlora", seq=512 * (i + 1), gpu="4070ti")
        resolved = resolve_arch(job.model)
        est = resolved.estimate(job, card)
        found.append(observations.of_estimate(card.key, "llm-train", job, est, "process", est.process_gib * scale,
                                              "synthetic"))
    observations.append(found)


def test_the_answer_gives_the_bound_and_decides_on_it(capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich's width: each sentence on one line
    out = _json(capsys, "fit", *JOB, "--json")
    assert out["decided_on"] == "peak_upper_gib" and out["kind"] == "llm-train"
    assert out["peak_upper_gib"] == pytest.approx(out["process_gib"] * (1 + out["bound_margin"])
                                                  + out["bound_abs_gib"], abs=2e-3)
    assert out["fits"] == (out["peak_upper_gib"] <= out["budget_gib"])
    assert main(["fit", *JOB]) == 0
    text = capsys.readouterr().out
    assert "upper bound" in text and "fits is decided on it" in text


def test_calibrate_then_plan_with_and_without_it(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")  # rich's width: the table whole on one screen
    before = _json(capsys, "fit", *JOB, "--json")
    _observe(1.1)
    result = _json(capsys, "fit", "calibrate", "--json")
    (group,) = result["groups"]
    assert (group["card"], group["kind"], group["observations"]) == ("rtx-4070-ti", "llm-train/transformers", 4)
    assert group["scale"] == pytest.approx(1.1, rel=1e-3)
    assert group["after_median_abs_error"] < group["before_median_abs_error"]
    assert result["saved_to"].endswith("calibration.json")
    after = _json(capsys, "fit", *JOB, "--json")
    assert after["calibration"] == {"scale": pytest.approx(1.1, rel=1e-3), "observations": 4}
    assert after["process_gib"] == pytest.approx(1.1 * before["process_gib"], abs=2e-3)
    without = _json(capsys, "fit", *JOB, "--no-calibration", "--json")
    assert without["calibration"] is None and without["process_gib"] == before["process_gib"]
    assert main(["fit", "calibrate"]) == 0
    text = capsys.readouterr().out
    assert "rtx-4070-ti" in text and "x1.100" in text and "leave-one-out" in text
    assert "saved 2 correction" in text  # the stack's, and its kind's for the card's other stacks


def test_calibrate_takes_no_job_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "calibrate", "--gpu", "4070ti"]) == 2
    err = capsys.readouterr().err
    assert "takes no job flags (--gpu given)" in err


def test_a_corrupt_observations_line_is_an_error_naming_file_and_line(capsys: pytest.CaptureFixture[str]) -> None:
    _observe(1.1, n=1)
    path = observations.observations_file()
    with path.open("a", encoding="utf-8") as f:
        f.write("not json\n")
    assert main(["fit", "calibrate"]) == 2
    assert f"{path}, line 2: not an observation" in capsys.readouterr().err


def test_help_shows_both_forms(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = capsys.readouterr().out
    assert "onecard fit [MODEL] [flags]" in text and "onecard fit calibrate [--json]" in text
    assert "--no-calibration" in text and "leave-one-out" in text


def test_a_reader_that_stops_early_ends_the_command_quietly() -> None:
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # `onecard fit ... --json | head` once head has what it wanted
    run = "import sys; from onecard.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", run, "fit", *JOB, "--json"], stdout=write,
                          stderr=subprocess.PIPE, text=True, env=os.environ | {"HF_HUB_OFFLINE": "1"}, timeout=120)
    os.close(write)
    assert done.returncode == 141 and "Traceback" not in done.stderr


def test_list_names_every_catalog_and_each_name_plans(capsys: pytest.CaptureFixture[str]) -> None:
    from onecard.fit.plan import resolve_arch

    names = _json(capsys, "fit", "--list", "--json")
    assert set(names) == {"llm", "diffusion", "yolo", "whisper"} and "llama-3.1-8b" in names["llm"]
    for family, keys in names.items():
        assert all(resolve_arch(key).family == family for key in keys)


def test_top_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", *JOB, "--solve", "--top", "0"])
    assert "--top: must be 1 or more" in capsys.readouterr().err


def test_measure_does_not_silently_drop_solve(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", *JOB, "--measure", "--solve"]) == 2
    assert "--measure takes the job as given; it does not combine with --solve" in capsys.readouterr().err


def test_peaks_the_user_reports_calibrate_that_card(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A user who ran jobs with their own tools reports nvidia-smi's figures; after three, calibrate moves the plan."""
    monkeypatch.setenv("COLUMNS", "200")
    before = _json(capsys, "fit", *JOB, "--json")
    for seq in (256, 512, 1024):
        planned = _json(capsys, "fit", *JOB, "--seq", str(seq), "--json")
        got = _json(capsys, "fit", *JOB, "--seq", str(seq), "--observed", f"{planned['process_gib'] * 1.1:.4f}",
                    "--json")
        obs = got["observation"]
        assert (obs["card"], obs["figure"], obs["source"]) == ("rtx-4070-ti", "process", "onecard fit --observed")
        assert obs["job"]["seq"] == seq and got["error"] == pytest.approx(1 / 1.1 - 1, abs=1e-3)
    assert got["in_group"] == 3 == got["min_observations"]
    assert len(observations.load()) == 3
    calibrated = _json(capsys, "fit", "calibrate", "--json")
    assert calibrated["corrections"] and calibrated["groups"][0]["untested"] == 3
    assert main(["fit", "calibrate"]) == 0  # leave-one-out has nothing to test on three: the table says so
    assert "leave-one-out cannot test a correction on them" in capsys.readouterr().out
    after = _json(capsys, "fit", *JOB, "--json")
    assert after["calibration"]["observations"] == 3
    assert after["process_gib"] == pytest.approx(1.1 * before["process_gib"], rel=2e-3)
    assert main(["fit", *JOB, "--observed", "9.5", "--figure", "reserved"]) == 0
    text = capsys.readouterr().out
    assert "observed 9.50 GiB (reserved)" in text and "4 observations of" in text and "fit calibrate" in text
    assert _json(capsys, "fit", "calibrate", "--json")["groups"][0]["untested"] == 0  # a 4th: each has 3 others


def test_a_reported_peak_names_its_card(capsys: pytest.CaptureFixture[str]) -> None:
    """No --gpu and no GPU here: the peak cannot be kept against a card, and nothing is written."""
    assert main(["fit", "llama-3.1-8b", "--observed", "9.5"]) == 2
    err = capsys.readouterr().err
    assert "none is named nor found" in err and "--gpu 4070ti" in err
    assert not observations.observations_file().exists()


def test_a_reported_peak_in_mib_is_refused_with_the_unit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", *JOB, "--observed", "9728"]) == 2  # nvidia-smi's MiB
    err = capsys.readouterr().err
    assert "not a peak the NVIDIA GeForce RTX 4070 Ti can hold" in err and "divide by 1024" in err
    assert not observations.observations_file().exists()


@pytest.mark.parametrize("argv, said", [
    (["--observed", "9.5", "--solve"], "--observed takes the job as given; it does not combine with --solve"),
    (["--observed", "9.5", "--measure"], "--observed takes the job as given; it does not combine with --measure"),
    (["--figure", "reserved"], "no --observed is given"),
])
def test_observed_takes_the_job_as_given(capsys: pytest.CaptureFixture[str], argv: list[str], said: str) -> None:
    assert main(["fit", *JOB, *argv]) == 2
    assert said in capsys.readouterr().err
    assert not observations.observations_file().exists()


def test_observed_must_be_a_positive_figure(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", *JOB, "--observed", "nan"])
    assert "--observed: must be a peak in GiB above 0" in capsys.readouterr().err

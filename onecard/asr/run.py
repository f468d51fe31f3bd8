"""The entry points of `onecard asr`: transcribe (files -> transcripts) and evaluate (WER/CER against references)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from onecard.asr import audio, model
from onecard.asr.config import EvalConfig, TranscribeConfig
from onecard.asr.data import Item, load_items
from onecard.asr.diarize import Diarizer, open_diarizer
from onecard.asr.formats import Transcript, write
from onecard.asr.metrics import error_rates, normalizer
from onecard.asr.postedit import post_edit
from onecard.asr.speakers import der, parse_speakers, read_rttm
from onecard.asr.transcribe import decode_options, transcribe_chunks
from onecard.core.errors import ConfigError, DataError
from onecard.core.records import Run, start_run

__all__ = ["transcribe", "evaluate"]


def transcribe(config: TranscribeConfig, runs_dir: str | None = None,
               report_to: tuple[str, ...] = ("trackio",)) -> dict[str, Any]:
    """Transcribe every file of `config.audio`; write its transcripts; return the run's id, files and figures."""
    files = [Path(a).expanduser() for a in config.audio]
    for f in files:
        if not f.is_file():
            raise DataError(f"{f}: no such audio file", "check the path")
    stems = [f.stem for f in files]
    if len(set(stems)) < len(stems):
        twice = sorted({s for s in stems if stems.count(s) > 1})
        raise ConfigError(f"two inputs would write the same transcript files: {', '.join(twice)}",
                          "transcribe files of the same name in separate runs, with different --out folders")
    glossary = _glossary(config.glossary)
    with start_run("asr", config, inputs={f.name: f for f in files}, runs_root=runs_dir, report_to=report_to) as run:
        whisper, settings = _open_model(config, run)
        diarizer = _open_diarizer(config, run)
        out = Path(config.out).expanduser() if config.out else run.dir
        editor = _open_editor(config) if config.post_edit else None
        results, totals = [], {"audio_s": 0.0, "speech_s": 0.0, "processing_s": 0.0, "segments": 0, "words": 0}
        edits = {"accepted": 0, "rejected": 0, "unchanged": 0}
        try:
            for f in files:
                total = audio.duration_s(f)
                with _progress(f.name, total) as update:
                    t0 = time.perf_counter()
                    transcript = _transcribe_file(whisper, settings, config, f, None, glossary, update, diarizer)
                    if editor is not None:
                        transcript.segments, counts = post_edit(transcript.segments, editor, glossary,
                                                                normalizer(_kind("auto", config, transcript.language)),
                                                                config.max_edit_share)
                        edits = {k: edits[k] + counts[k] for k in edits}
                    seconds = time.perf_counter() - t0
                paths = write(transcript, out, f.stem, list(config.formats))
                for p in paths:
                    run.add_artifact(p, kind=f"transcript-{p.suffix[1:]}")
                totals["audio_s"] += transcript.duration_s
                totals["speech_s"] += transcript.speech_s
                totals["processing_s"] += seconds
                totals["segments"] += len(transcript.segments)
                totals["words"] += len(transcript.text.split())
                results.append({"audio": str(f), "language": transcript.language,
                                "duration_s": round(transcript.duration_s, 3),
                                "speech_s": round(transcript.speech_s, 3), "processing_s": round(seconds, 3),
                                "rtf": round(seconds / transcript.duration_s, 4) if transcript.duration_s else None,
                                "files": [str(p) for p in paths], "text": transcript.text})
        finally:
            if editor is not None:
                editor.close()
        metrics: dict[str, Any] = {**{k: round(v, 3) for k, v in totals.items()},
                                   "rtf": round(totals["processing_s"] / totals["audio_s"], 4)
                                   if totals["audio_s"] else None}
        if editor is not None:
            metrics["post_edit"] = edits
        run.set_metrics(metrics)
        return {"run_id": run.id, "dir": str(run.dir), "settings": settings.to_json(), "files": results,
                **({"diarizer": diarizer.to_json()} if diarizer else {}), **metrics}


def evaluate(config: EvalConfig, runs_dir: str | None = None,
             report_to: tuple[str, ...] = ("trackio",)) -> dict[str, Any]:
    """WER and CER per file and overall, and the real-time factor; with `compare`, the flipped settings beside."""
    items = load_items(config.data, config.language_filter)
    glossary = _glossary(config.glossary)
    variants = [("as configured", config)]
    if "vad" in config.compare:
        variants.append((f"vad {'off' if config.vad else 'on'}", config.model_copy(update={"vad": not config.vad})))
    if "post-edit" in config.compare:
        flipped = config.model_copy(update={"post_edit": not config.post_edit})
        variants.append((f"post-edit {'off' if config.post_edit else 'on'}", flipped))
    with start_run("asr", config, inputs={"data": config.data}, runs_root=runs_dir, report_to=report_to) as run:
        whisper, settings = _open_model(config, run)
        diarizer = _open_diarizer(config, run)
        rows = []
        for label, variant in variants:
            editor = _open_editor(variant) if variant.post_edit else None
            try:
                rows.append({"variant": label, **_score(items, whisper, settings, variant, glossary, editor,
                                                        diarizer)})
            finally:
                if editor is not None:
                    editor.close()
        run.set_metrics({k: v for k, v in rows[0].items() if k not in ("files", "variant")})
        run.set("variants", rows)
        return {"run_id": run.id, "dir": str(run.dir), "settings": settings.to_json(),
                **({"diarizer": diarizer.to_json()} if diarizer else {}), "variants": rows}


def _score(items: list[Item], whisper: Any, settings: model.Settings, config: EvalConfig, glossary: list[str],
           editor: Any, diarizer: Diarizer | None) -> dict[str, Any]:
    files, refs, hyps, kinds = [], [], [], []
    audio_s = processing_s = 0.0
    diarization = _der_metric(config, items)
    edits = {"accepted": 0, "rejected": 0, "unchanged": 0}
    for item in items:
        with _progress(item.name, audio.duration_s(item.audio)) as update:
            t0 = time.perf_counter()
            transcript = _transcribe_file(whisper, settings, config, item.audio, item.channel, glossary, update,
                                          diarizer, language=item.language)
            kind = _kind(config.normalizer, config, item.language or transcript.language)
            if editor is not None:
                transcript.segments, counts = post_edit(transcript.segments, editor, glossary, normalizer(kind),
                                                        config.max_edit_share)
                edits = {k: edits[k] + counts[k] for k in edits}
            seconds = time.perf_counter() - t0
        scores = error_rates([item.reference], [transcript.text], normalizer(kind))
        files.append({"file": item.name, "language": transcript.language, "normalizer": kind,
                      "wer": scores.get("wer"), "cer": scores.get("cer"), "rtf": seconds / transcript.duration_s
                      if transcript.duration_s else None, "reference": item.reference, "hypothesis": transcript.text})
        rttm = item.audio.with_suffix(".rttm")
        if diarization is not None and item.channel is None and rttm.is_file():
            files[-1]["der"] = der(read_rttm(rttm), transcript.segments, diarization)
        refs.append(item.reference)
        hyps.append(transcript.text)
        kinds.append(kind)
        audio_s += transcript.duration_s
        processing_s += seconds
    # one normaliser for the corpus figure: each pair was scored with its own; mixed corpora are summed per kind
    overall: dict[str, float] = {}
    for kind in sorted(set(kinds)):
        picked = [(r, h) for r, h, k in zip(refs, hyps, kinds, strict=True) if k == kind]
        part = error_rates([r for r, _ in picked], [h for _, h in picked], normalizer(kind))
        for key in ("substitutions", "deletions", "insertions", "reference_words"):
            overall[key] = overall.get(key, 0) + part.get(key, 0)
    errors = overall.get("substitutions", 0) + overall.get("deletions", 0) + overall.get("insertions", 0)
    wer = errors / overall["reference_words"] if overall.get("reference_words") else None
    cers = [f["cer"] for f in files if f["cer"] is not None]
    result: dict[str, Any] = {"wer": wer, "cer_mean": sum(cers) / len(cers) if cers else None,
                              "rtf": processing_s / audio_s if audio_s else None, "audio_s": round(audio_s, 3),
                              "processing_s": round(processing_s, 3), "files": files}
    if editor is not None:
        result["post_edit"] = edits
    if any("der" in f for f in files):
        result["der"] = abs(diarization)  # pyannote's corpus figure: errors over all reference speech
    return result


def _der_metric(config: EvalConfig, items: list[Item]) -> Any:
    """pyannote.metrics' DER accumulator when speakers are labelled and a file has an RTTM reference, else None."""
    if config.speakers == "off" or not any(i.audio.with_suffix(".rttm").is_file() for i in items):
        return None
    from onecard.core.extras import require

    require("pyannote.metrics", "asr", "pyannote.metrics")
    from pyannote.metrics.diarization import DiarizationErrorRate

    return DiarizationErrorRate()


def _open_model(config: TranscribeConfig | EvalConfig, run: Run) -> tuple[Any, model.Settings]:
    from onecard.core.extras import require

    require("faster_whisper", "asr", "faster-whisper")
    path = model.resolve(config.model, run.dir.parent)
    settings = model.choose(config.model, config.device, config.compute_type, config.batch_size, config.beam_size)
    run.set("model", {"ref": config.model, "path": str(path)})
    run.set("settings", settings.to_json())
    return model.load(path, settings, config.cpu_threads), settings


def _open_diarizer(config: TranscribeConfig | EvalConfig, run: Run) -> Diarizer | None:
    """The diarizer of --diarizer when speakers are labelled (recorded: which ran and why), else None."""
    if config.speakers == "off":
        return None
    diarizer = open_diarizer(config.diarizer)
    run.set("diarizer", diarizer.to_json())
    return diarizer


def _open_editor(config: TranscribeConfig | EvalConfig) -> Any:
    from onecard.llm import LLMConfig, load

    return load(LLMConfig.model_validate({"model": config.llm, "backend": config.llm_backend}))


def _transcribe_file(whisper: Any, settings: model.Settings, config: TranscribeConfig | EvalConfig, path: Path,
                     channel: int | None, glossary: list[str], on_progress: Callable[[float], None],
                     diarizer: Diarizer | None, language: str | None = None) -> Transcript:
    lang = config.language if config.language != "auto" or language is None else language
    options = decode_options(lang, config.vad, config.word_timestamps, config.beam_size,
                             " ".join(glossary) or None)
    chunks = audio.stream(path, config.chunk_s, channel)
    duration = 0.0

    def counted() -> Iterator[Any]:
        nonlocal duration
        for chunk in chunks:
            duration += len(chunk) / audio.SAMPLE_RATE
            yield chunk

    infos: list[Any] = []
    found = list(transcribe_chunks(whisper, counted(), options, settings.batch_size, on_progress, config.chunk_s,
                                   infos))
    detected = found[-1][1] if found else lang
    # the carried seams are counted twice here: a few seconds per 10-minute chunk
    speech = sum(i.duration_after_vad for i in infos) if config.vad else duration
    segments = [s for s, _ in found]
    speakers = parse_speakers(config.speakers)
    if speakers is not None and diarizer is not None:  # a second pass over the audio
        diarizer.label(segments, path, speakers, channel, config.chunk_s)
    return Transcript(str(path), detected if detected != "auto" else "", duration, segments, min(speech, duration))


def _kind(requested: str, config: TranscribeConfig | EvalConfig, language: str | None) -> Any:
    if requested != "auto":
        return requested
    english = config.model.lower().endswith(".en") or (language or "").startswith("en")
    return "english" if english else "basic"


def _glossary(path: str | None) -> list[str]:
    if path is None:
        return []
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{p}: no such glossary file", "pass a text file with one name or term per line")
    return [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


@contextlib.contextmanager
def _progress(name: str, total_s: float | None) -> Iterator[Callable[[float], None]]:
    """A bar of audio seconds done against the total, with the real-time factor so far (on stderr; --quiet: none)."""
    from onecard.core.progress import is_quiet, stderr_console

    if is_quiet():
        yield lambda _: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    started = time.perf_counter()
    of = f"/{total_s:.0f}" if total_s else ""
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}" + of + " s audio"),
               TextColumn("RTF {task.fields[rtf]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr_console(), transient=False) as bar:
        task = bar.add_task(name, total=total_s, rtf="-")

        def update(done_s: float) -> None:
            done_s = min(done_s, total_s) if total_s else done_s
            rtf = f"{(time.perf_counter() - started) / done_s:.2f}" if done_s > 0 else "-"
            bar.update(task, completed=done_s, rtf=rtf)

        yield update

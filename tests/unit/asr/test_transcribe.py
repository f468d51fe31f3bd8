"""The seams between chunks, with a fake model: each run of non-zero samples is one segment whose text is its value."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from onecard.asr.audio import SAMPLE_RATE
from onecard.asr.transcribe import transcribe_chunks

SR = SAMPLE_RATE


@dataclass
class _Raw:
    start: float
    end: float
    text: str
    words: list[Any] = field(default_factory=list)
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0


@dataclass
class _Info:
    language: str = "en"
    duration_after_vad: float = 0.0


class FakeWhisper:
    def __init__(self) -> None:
        self.lengths: list[float] = []

    def transcribe(self, audio: np.ndarray, **_: Any) -> tuple[Iterator[_Raw], _Info]:
        self.lengths.append(len(audio) / SR)
        edges = np.flatnonzero(np.diff(np.concatenate([[0.0], audio, [0.0]])))
        runs = [(edges[i], edges[i + 1]) for i in range(0, len(edges) - 1)
                if audio[edges[i]] != 0 and (i == 0 or audio[edges[i] - 1] != audio[edges[i]])]
        return iter(_Raw(a / SR, b / SR, f" w{audio[a]:.2f}") for a, b in runs), _Info()


def _speech(spans: list[tuple[float, float]], total_s: float) -> np.ndarray:
    audio = np.zeros(int(total_s * SR), dtype=np.float32)
    for i, (a, b) in enumerate(spans):
        audio[int(a * SR):int(b * SR)] = 0.01 * (i + 1)
    return audio


def _chunks(audio: np.ndarray, chunk_s: float) -> Iterator[np.ndarray]:
    size = int(chunk_s * SR)
    yield from (audio[i:i + size] for i in range(0, len(audio), size))


@pytest.mark.parametrize("chunk_s", [60.0, 100.0, 1000.0])
def test_every_segment_comes_out_once_and_whole_at_its_time(chunk_s: float) -> None:
    spans = [(5, 20), (55, 70), (99.5, 105), (140, 150), (199, 200.0), (230, 250)]  # across and at the seams
    audio = _speech(spans, 260)
    model = FakeWhisper()
    done: list[float] = []
    out = [s for s, _ in transcribe_chunks(model, _chunks(audio, chunk_s), {}, on_progress=done.append,
                                           chunk_s=chunk_s)]
    assert [(s.start, s.end) for s in out] == [(float(a), float(b)) for a, b in spans]
    assert [s.text for s in out] == [f" w{0.01 * (i + 1):.2f}" for i in range(len(spans))]
    assert max(model.lengths) <= 1.5 * chunk_s  # the carry stays bounded
    assert done[-1] == pytest.approx(260) and done == sorted(done)


def test_silence_gives_no_segment() -> None:
    out = list(transcribe_chunks(FakeWhisper(), _chunks(np.zeros(SR * 130, np.float32), 60.0), {}, chunk_s=60.0))
    assert out == []

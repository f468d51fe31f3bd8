"""Speaker labels: clustering, the --speakers values, RTTM references, DER, segment audio read in chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onecard.asr.config import TranscribeConfig
from onecard.asr.formats import Segment
from onecard.asr.speakers import AUTO_DISTANCE, cluster, der, parse_speakers, read_rttm, segment_audio
from onecard.core.errors import DataError, ModelNotFoundError
from tests.unit.asr.conftest import write_wav


def _voices(rng: np.random.Generator, centres: list[int], spread: float) -> np.ndarray:
    """Unit vectors around a few random centres (the angle to a centre set by `spread`)."""
    base = rng.normal(size=(max(centres) + 1, 256))
    rows = base[centres] + spread * rng.normal(size=(len(centres), 256))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_auto_finds_the_speakers_and_numbers_them_by_first_appearance() -> None:
    rng = np.random.default_rng(0)
    assert cluster(_voices(rng, [2, 2, 0, 2, 1, 0], 0.3), 0) == [0, 0, 1, 0, 2, 1]


def test_a_given_count_is_kept_and_one_segment_is_one_speaker() -> None:
    rng = np.random.default_rng(1)
    assert len(set(cluster(_voices(rng, [0, 1, 2, 3], 0.3), 2))) == 2
    assert cluster(_voices(rng, [0], 0.3), 0) == [0]
    assert cluster(np.zeros((0, 256)), 0) == []


def test_auto_keeps_one_voice_together() -> None:
    rng = np.random.default_rng(2)
    close = _voices(rng, [0] * 6, 0.2)  # cosine distance to each other well below AUTO_DISTANCE
    assert 1 - (close @ close.T).min() < AUTO_DISTANCE
    assert cluster(close, 0) == [0] * 6


@pytest.mark.parametrize(("value", "parsed"), [("off", None), ("auto", 0), ("3", 3), (2, 2)])
def test_speakers_values(value: object, parsed: int | None) -> None:
    config = TranscribeConfig.model_validate({"audio": ["a.wav"], "speakers": value})
    assert parse_speakers(config.speakers) == parsed


@pytest.mark.parametrize("value", ["0", "many", "-1"])
def test_a_bad_speakers_value_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="auto, off or a number"):
        TranscribeConfig.model_validate({"audio": ["a.wav"], "speakers": value})


def test_rttm_turns_and_a_bad_line_named(tmp_path: Path) -> None:
    good = tmp_path / "a.rttm"
    good.write_text("SPEAKER a 1 0.50 2.00 <NA> <NA> alice <NA> <NA>\n\nSPEAKER a 1 3.0 1.5 <NA> <NA> bob <NA> <NA>\n")
    assert read_rttm(good) == [(0.5, 2.5, "alice"), (3.0, 4.5, "bob")]
    bad = tmp_path / "b.rttm"
    bad.write_text("SPEAKER a 1 0.5 2.0 <NA> <NA> alice\nSPEAKER a 1 x\n")
    with pytest.raises(DataError, match=r"b\.rttm:2"):
        read_rttm(bad)


def test_der_is_zero_when_labels_match_and_counts_confusion() -> None:
    pytest.importorskip("pyannote.metrics")
    reference = [(0.0, 2.0, "alice"), (2.0, 4.0, "bob")]
    right = [Segment(0.0, 2.0, "a", speaker="S1"), Segment(2.0, 4.0, "b", speaker="S2")]
    assert der(reference, right) == pytest.approx(0.0)
    wrong = [Segment(0.0, 2.0, "a", speaker="S1"), Segment(2.0, 4.0, "b", speaker="S1")]
    assert der(reference, wrong) == pytest.approx(0.5)  # bob's 2 s of 4 s attributed to alice's label


def test_segment_audio_spans_chunk_seams(tmp_path: Path) -> None:
    pytest.importorskip("av")
    ramp = np.arange(5 * 16_000, dtype=np.float32) / (5 * 16_000)
    path = write_wav(tmp_path / "ramp.wav", ramp)
    clips = segment_audio(path, [Segment(0.5, 1.5, ""), Segment(1.8, 3.3, "")], chunk_s=1.0)
    assert [len(c) for c in clips] == [16_000, 24_000]
    assert clips[1][0] == pytest.approx(ramp[int(1.8 * 16_000)], abs=1e-4)  # 16-bit PCM rounding


def test_without_resemblyzer_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import PackageNotFoundError

    from onecard.asr import speakers

    def missing(name: str) -> None:
        raise PackageNotFoundError(name)

    monkeypatch.setattr("importlib.metadata.distribution", missing)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps resemblyzer"):
        speakers._weights_file()

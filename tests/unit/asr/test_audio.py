from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

from onecard.asr import audio  # noqa: E402
from onecard.core.errors import DataError  # noqa: E402
from tests.unit.asr.conftest import write_wav  # noqa: E402


def test_stream_cuts_chunks_of_the_asked_length_and_loses_no_sample(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = write_wav(tmp_path / "noise.wav", rng.uniform(-0.5, 0.5, 16_000 * 150))
    chunks = list(audio.stream(path, 60.0))
    assert [len(c) for c in chunks] == [16_000 * 60, 16_000 * 60, 16_000 * 30]
    assert all(c.dtype == np.float32 for c in chunks)
    whole = audio.decode(path)
    np.testing.assert_array_equal(np.concatenate(chunks), whole)
    assert audio.duration_s(path) == pytest.approx(150.0)


def test_resamples_to_16_khz_and_picks_a_channel(tmp_path: Path) -> None:
    t = np.arange(8_000 * 2) / 8_000
    left, right = 0.5 * np.sin(2 * np.pi * 200 * t), np.zeros_like(t)
    path = write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1), rate=8_000)
    mixed, only_left, only_right = audio.decode(path), audio.decode(path, 0), audio.decode(path, 1)
    assert len(mixed) == pytest.approx(32_000, abs=64)
    assert np.abs(only_right).max() < 1e-3
    assert np.abs(only_left).max() == pytest.approx(0.5, abs=0.05)
    assert np.abs(mixed).max() < np.abs(only_left).max()  # the silent channel halves the mix


def test_a_file_that_is_not_audio_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not a wave file\n" * 50)
    with pytest.raises(DataError, match="notes.wav"):
        list(audio.stream(bad, 60.0))
    with pytest.raises(DataError, match="no such audio file"):
        audio.duration_s(tmp_path / "missing.flac")


def test_a_mono_file_has_no_right_channel(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "mono.wav", np.zeros(1600))
    with pytest.raises(DataError, match="no right channel"):
        audio.decode(path, 1)


@pytest.mark.parametrize("suffix, codec", [(".m4a", "aac"), (".mp3", "libmp3lame"), (".flac", "flac")])
def test_compressed_formats_decode_to_the_same_length(tmp_path: Path, suffix: str, codec: str) -> None:
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    rate, seconds = 44_100, 3.0
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)).astype(np.float32)
    path = tmp_path / f"tone{suffix}"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone[None, :] if codec != "flac" else (tone * 32767).astype("<i2")[None, :],
                                           format="fltp" if codec != "flac" else "s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    decoded = audio.decode(path)
    assert len(decoded) / audio.SAMPLE_RATE == pytest.approx(seconds, abs=0.1)
    assert np.abs(decoded).max() == pytest.approx(0.3, abs=0.05)

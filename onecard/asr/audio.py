"""Audio in: any file PyAV decodes, as 16 kHz mono float32, in chunks of bounded length.

faster-whisper's `decode_audio` reads a whole file into one array (an hour of 16 kHz float32 is 230 MB, and its
resampling buffers double that); here the same PyAV resampling (s16, mono, 16 kHz: faster_whisper/audio.py) is cut
into chunks as it decodes, so memory does not grow with the file's length.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onecard.core.errors import DataError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["SAMPLE_RATE", "duration_s", "stream", "decode", "CHANNELS"]

SAMPLE_RATE = 16_000  # Whisper's input rate (its mel front end: 16 kHz, hop 160)
CHANNELS = {"left": 0, "right": 1}


def duration_s(path: str | Path) -> float | None:
    """The file's length in seconds as its container states it; None when it does not say."""
    with _open(path) as container:
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        return container.duration / 1_000_000 if container.duration else None


def stream(path: str | Path, chunk_s: float, channel: int | None = None) -> Iterator[np.ndarray]:
    """Yield the audio as float32 arrays of `chunk_s` seconds at 16 kHz (the last one shorter).

    Args:
        path: an audio or video file.
        chunk_s: seconds per chunk.
        channel: None mixes all channels down to mono; 0 or 1 takes the left or right channel alone.
    """
    import av
    import numpy as np

    size = int(chunk_s * SAMPLE_RATE)
    layout = "mono" if channel is None else "stereo"
    resampler = av.AudioResampler(format="s16", layout=layout, rate=SAMPLE_RATE)
    pending: list[np.ndarray] = []
    held = 0
    with _open(path) as container:
        if channel is not None and container.streams.audio[0].channels < 2:
            raise DataError(f"{path}: has one channel, so it has no {'left' if channel == 0 else 'right'} channel",
                            "drop the [left channel]/[right channel] tag from its manifest row")
        try:
            for frame in _frames(container):
                for out in resampler.resample(frame):
                    pcm = out.to_ndarray().reshape(-1, 1 if channel is None else 2)[:, channel or 0]
                    pending.append(pcm)
                    held += len(pcm)
                    while held >= size:
                        joined = np.concatenate(pending)
                        yield joined[:size].astype(np.float32) / 32768.0
                        pending, held = [joined[size:]], len(joined) - size
            for out in resampler.resample(None):  # flush the resampler's buffered tail
                pending.append(out.to_ndarray().reshape(-1, 1 if channel is None else 2)[:, channel or 0])
        except av.FFmpegError as e:
            raise DataError(f"{path}: decoding failed part-way ({e})", "check the file plays, or convert it") from None
    if pending and sum(map(len, pending)):
        yield np.concatenate(pending).astype(np.float32) / 32768.0


def decode(path: str | Path, channel: int | None = None) -> np.ndarray:
    """The whole file as one float32 array (short clips: evaluation, tests)."""
    import numpy as np

    chunks = list(stream(path, 3600.0, channel))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def _frames(container: Any) -> Iterator[Any]:
    import av

    frames = container.decode(audio=0)
    while True:
        try:
            yield next(frames)
        except StopIteration:
            return
        except av.InvalidDataError:  # a damaged frame: skipped, as faster-whisper's decode_audio does
            continue


def _open(path: str | Path):  # type: ignore[no-untyped-def]
    import av

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such audio file", "check the path")
    try:
        container = av.open(str(p), metadata_errors="ignore")
    except av.FFmpegError as e:
        raise DataError(f"{p}: not an audio or video file PyAV can decode ({e})",
                        "pass a wav, flac, mp3, m4a, ogg or mp4 file (or convert it with ffmpeg)") from None
    if not container.streams.audio:
        container.close()
        raise DataError(f"{p}: has no audio stream", "pass a file with sound in it")
    return container

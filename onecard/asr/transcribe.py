"""Whisper over audio of any length in bounded memory: chunks in, segments out, nothing cut in half at a seam.

Each chunk (default 10 minutes) goes through faster-whisper with the audio carried over from the chunk before. When
the last segment of a chunk reaches the chunk's end it may be cut mid-word, so it is not kept: its audio, from its
start on, is carried into the next chunk and transcribed again whole. When the chunk ends in silence, its last seconds
(`TAIL_S`) are carried instead, for a word just starting there. The carry is bounded by half a chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from onecard.asr.audio import SAMPLE_RATE
from onecard.asr.formats import Segment, Word

if TYPE_CHECKING:
    import numpy as np

__all__ = ["transcribe_chunks", "decode_options", "TAIL_S", "SEAM_S"]

TAIL_S = 5.0  # seconds carried when a chunk ends in silence
SEAM_S = 1.0  # a segment ending this close to the chunk's end may be cut there


def decode_options(language: str, vad: bool, word_timestamps: bool, beam_size: int,
                   hotwords: str | None) -> dict[str, Any]:
    """faster-whisper `transcribe` keywords for the settings (the rest stay at its defaults)."""
    return {"language": None if language == "auto" else language, "vad_filter": vad, "beam_size": beam_size,
            "word_timestamps": word_timestamps, "hotwords": hotwords}


def transcribe_chunks(model: Any, chunks: Iterable[np.ndarray], options: dict[str, Any], batch_size: int = 1,
                      on_progress: Callable[[float], None] | None = None, chunk_s: float = 600.0,
                      infos: list[Any] | None = None) -> Iterator[tuple[Segment, str]]:
    """Yield (segment, language) in order, with times from the start of the audio.

    Args:
        model: a faster-whisper WhisperModel.
        chunks: float32 16 kHz arrays, in order (`onecard.asr.audio.stream`).
        options: `decode_options(...)`.
        batch_size: > 1 decodes that many 30 s windows at once (faster-whisper's BatchedInferencePipeline).
        on_progress: called with the seconds of audio done so far.
        chunk_s: the chunks' length: the carried audio never exceeds half of it.
        infos: if given, each chunk's faster-whisper TranscriptionInfo is appended (duration_after_vad...).
    """
    import numpy as np

    runner = model
    if batch_size > 1:
        from faster_whisper import BatchedInferencePipeline

        runner, options = BatchedInferencePipeline(model), {**options, "batch_size": batch_size}
    carry = np.zeros(0, dtype=np.float32)
    offset = 0.0  # where `carry` starts in the whole audio, seconds
    language = options.get("language")
    done = 0.0  # seconds reported to on_progress: never back (a carried segment is reported, then taken back)
    for chunk, last in _with_last(chunks):
        audio = np.concatenate([carry, chunk]) if len(carry) else chunk
        length = len(audio) / SAMPLE_RATE
        segments, info = runner.transcribe(audio, **{**options, "language": language})
        language = language or info.language  # the first chunk's detection holds for the rest
        if infos is not None:
            infos.append(info)
        held: list[Segment] = []
        for raw in segments:  # a lazy generator: decoding happens as it is consumed
            held.append(_segment(raw, offset))
            if on_progress is not None and offset + raw.end > done:
                done = offset + raw.end
                on_progress(done)
        keep_until = length
        if not last:
            end, start = (held[-1].end - offset, held[-1].start - offset) if held else (0.0, 0.0)
            if held and length - end < SEAM_S and length - chunk_s / 2 <= start and start > 0:
                keep_until = held.pop().start - offset
            else:
                keep_until = max(length - TAIL_S, end)
        for segment in held:
            yield segment, str(language)
        cut = min(len(audio), int(round(keep_until * SAMPLE_RATE)))
        carry, offset = audio[cut:], offset + cut / SAMPLE_RATE
        if on_progress is not None and offset > done:
            done = offset
            on_progress(done)


def _segment(raw: Any, offset: float) -> Segment:
    words = [Word(round(w.start + offset, 3), round(w.end + offset, 3), w.word, round(w.probability, 4))
             for w in raw.words or []]
    return Segment(round(raw.start + offset, 3), round(raw.end + offset, 3), raw.text, words,
                   round(raw.avg_logprob, 4), round(raw.no_speech_prob, 4))


def _with_last(items: Iterable[Any]) -> Iterator[tuple[Any, bool]]:
    it = iter(items)
    try:
        current = next(it)
    except StopIteration:
        return
    for following in it:
        yield current, False
        current = following
    yield current, True

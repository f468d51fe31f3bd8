"""Speaker labels for transcript segments: one voice embedding per segment, then clustering; DER against RTTM.

The embedder is Resemblyzer's voice encoder (GE2E d-vectors, Wan et al. 2018, arXiv:1710.10467: a 3-layer LSTM over
40 mel bands, 256-d, L2-normed), its weights read from the `resemblyzer` package's pretrained.pt with
`torch.load(weights_only=True)`. Its front end (resemblyzer/audio.py: volume raised to -30 dBFS, then
librosa.feature.melspectrogram with a 25 ms Hann window, 10 ms hop, 40 Slaney mel bands, power 2) is computed here
with transformers' audio_utils, and an utterance is embedded as resemblyzer's `embed_utterance` does (1.6 s partials,
1.3 per second, their mean L2-normed). So resemblyzer's own imports (librosa, webrtcvad, which needs setuptools<81)
are never loaded: `pip install --no-deps resemblyzer` is all it takes (15 MB, the weights).

This is the diarizer that always runs offline; pyannote.audio's pipeline is used instead where the user's environment
has it and the pipeline is cached (`onecard.asr.diarize` chooses). pyannote.metrics (no weights) scores DER.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onecard.asr import audio
from onecard.asr.formats import Segment
from onecard.core.errors import DataError, ModelNotFoundError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["label_speakers", "embed", "cluster", "parse_speakers", "read_rttm", "der", "AUTO_DISTANCE"]

N_MELS, WINDOW, HOP = 40, 400, 160  # resemblyzer hparams: 40 channels, 25 ms window, 10 ms step at 16 kHz
PARTIAL_FRAMES = 160  # 1.6 s per partial utterance (resemblyzer hparams.partials_n_frames)
PARTIALS_PER_S, MIN_COVERAGE = 1.3, 0.75  # resemblyzer VoiceEncoder.embed_utterance defaults
TARGET_DBFS = -30.0  # resemblyzer hparams.audio_norm_target_dBFS
# --speakers auto: clusters closer than this cosine distance (average linkage) are one speaker. On the shared clips
# two halves of one speaker's speech are 0.18 (jfk) and 0.23 (stereo_diarization left) apart, different speakers
# 0.36-0.67 (all pairs of the five voices): 0.3 splits them. Few voices: a figure to revisit on more data.
AUTO_DISTANCE = 0.3


def parse_speakers(value: str) -> int | None:
    """A validated --speakers value: `off` -> None, `auto` -> 0 (the clustering decides), `N` -> N."""
    return None if value == "off" else 0 if value == "auto" else int(value)


class _Encoder:
    """Resemblyzer's VoiceEncoder network with its shipped weights."""

    def __init__(self) -> None:
        import torch

        weights = _weights_file()
        state = torch.load(weights, map_location="cpu", weights_only=True)["model_state"]
        self.lstm = torch.nn.LSTM(N_MELS, 256, 3, batch_first=True)
        self.linear = torch.nn.Linear(256, 256)
        self.lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        self.linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
        from transformers.audio_utils import mel_filter_bank, window_function

        self.filters = mel_filter_bank(num_frequency_bins=WINDOW // 2 + 1, num_mel_filters=N_MELS, min_frequency=0.0,
                                       max_frequency=audio.SAMPLE_RATE / 2, sampling_rate=audio.SAMPLE_RATE,
                                       norm="slaney", mel_scale="slaney")
        self.window = window_function(WINDOW, "hann")

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        """The 256-d embedding of one utterance (float32 16 kHz), L2-normed."""
        import numpy as np
        import torch
        from transformers.audio_utils import spectrogram

        rms = float(np.sqrt(np.mean((wav * 32767.0) ** 2))) if len(wav) else 0.0
        if rms > 0:
            change = TARGET_DBFS - 20 * np.log10(rms / 32767.0)
            wav = wav * 10 ** (change / 20) if change > 0 else wav  # raised only, as resemblyzer does
        n_frames = int(np.ceil((len(wav) + 1) / HOP))
        step = int(np.round(audio.SAMPLE_RATE / PARTIALS_PER_S / HOP))
        starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
        coverage = (len(wav) - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
        if coverage < MIN_COVERAGE and len(starts) > 1:
            starts.pop()
        end = (starts[-1] + PARTIAL_FRAMES) * HOP
        if end >= len(wav):
            wav = np.pad(wav, (0, end - len(wav)))
        mel = spectrogram(wav.astype(np.float64), self.window, frame_length=WINDOW, hop_length=HOP, power=2.0,
                          center=True, pad_mode="constant", mel_filters=self.filters).T.astype(np.float32)
        partials = torch.from_numpy(np.stack([mel[s:s + PARTIAL_FRAMES] for s in starts]))
        with torch.no_grad():
            _, (hidden, _) = self.lstm(partials)
            raw = torch.relu(self.linear(hidden[-1]))
            embeds = (raw / raw.norm(dim=1, keepdim=True)).numpy()
        mean: np.ndarray = embeds.mean(axis=0)
        return mean / float(np.linalg.norm(mean))


def _weights_file() -> str:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("resemblyzer")
    except PackageNotFoundError:
        raise ModelNotFoundError("speaker labels need a voice encoder, and resemblyzer (which ships one) is not "
                                 "installed", "install its weights with `pip install --no-deps resemblyzer` (15 MB; "
                                 "librosa and webrtcvad are not needed), or pass --speakers off") from None
    found = [f for f in dist.files or [] if f.name == "pretrained.pt"]
    if not found:
        raise ModelNotFoundError("the resemblyzer package has no pretrained.pt", "reinstall it: "
                                 "`pip install --no-deps --force-reinstall resemblyzer`")
    return str(dist.locate_file(found[0]))


def segment_audio(path: str | Path, segments: Sequence[Segment], channel: int | None = None,
                  chunk_s: float = 600.0) -> list[np.ndarray]:
    """Each segment's samples, read in one pass of `chunk_s` chunks (memory: one chunk and one segment)."""
    import numpy as np

    spans = [(round(s.start * audio.SAMPLE_RATE), round(s.end * audio.SAMPLE_RATE)) for s in segments]
    parts: list[list[np.ndarray]] = [[] for _ in segments]
    offset = 0
    for chunk in audio.stream(path, chunk_s, channel):
        end = offset + len(chunk)
        for i, (a, b) in enumerate(spans):
            if a < end and b > offset:
                parts[i].append(chunk[max(a - offset, 0):min(b - offset, len(chunk))])
        offset = end
    return [np.concatenate(p) if p else np.zeros(0, dtype=np.float32) for p in parts]


def embed(clips: Sequence[np.ndarray]) -> np.ndarray:
    """(n, 256) voice embeddings of the clips."""
    import numpy as np

    encoder = _Encoder()
    return np.stack([encoder(c) for c in clips]) if clips else np.zeros((0, 256), dtype=np.float32)


def cluster(embeddings: np.ndarray, speakers: int) -> list[int]:
    """A speaker index per row, numbered by first appearance: `speakers` clusters, or with 0 as many as stay
    `AUTO_DISTANCE` apart (agglomerative clustering, cosine distance, average linkage: scikit-learn)."""
    n = len(embeddings)
    if n == 0:
        return []
    if n == 1 or speakers == 1:
        return [0] * n
    from sklearn.cluster import AgglomerativeClustering

    model = (AgglomerativeClustering(n_clusters=min(speakers, n), metric="cosine", linkage="average") if speakers
             else AgglomerativeClustering(n_clusters=None, distance_threshold=AUTO_DISTANCE, metric="cosine",
                                          linkage="average"))
    raw = model.fit_predict(embeddings)
    order: dict[int, int] = {}
    return [order.setdefault(int(c), len(order)) for c in raw]


def label_speakers(segments: list[Segment], path: str | Path, speakers: int, channel: int | None = None,
                   chunk_s: float = 600.0) -> int:
    """Set `segment.speaker` (SPEAKER_1, SPEAKER_2... by first appearance) on each segment; returns the count."""
    if not segments:
        return 0
    labels = cluster(embed(segment_audio(path, segments, channel, chunk_s)), speakers)
    for segment, label in zip(segments, labels, strict=True):
        segment.speaker = f"SPEAKER_{label + 1}"
    return len(set(labels))


def read_rttm(path: str | Path) -> list[tuple[float, float, str]]:
    """(start, end, speaker) turns of an RTTM file's SPEAKER lines."""
    turns = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        try:
            start, length = float(fields[3]), float(fields[4])
        except (IndexError, ValueError):
            raise DataError(f"{path}:{number}: not an RTTM SPEAKER line (type file channel start duration <NA> <NA> "
                            f"speaker ...): {line!r}", "fix or remove the line") from None
        turns.append((start, start + length, fields[7]))
    return turns


def der(reference: Sequence[tuple[float, float, str]], segments: Sequence[Segment], metric: Any = None) -> float:
    """Diarization error rate of the labelled segments against reference turns (pyannote.metrics, no collar, overlap
    scored). Pass one `DiarizationErrorRate` for several files: `abs(metric)` is then the corpus figure."""
    from pyannote.core import Annotation, Timeline
    from pyannote.core import Segment as Span
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref, hyp = Annotation(), Annotation()
    for i, (start, end, who) in enumerate(reference):
        ref[Span(start, end), i] = who
    for i, s in enumerate(segments):
        if s.speaker is not None and s.end > s.start:
            hyp[Span(s.start, s.end), i] = s.speaker
    if not reference:
        raise DataError("the reference has no speaker turns", "check the RTTM file has SPEAKER lines")
    metric = metric if metric is not None else DiarizationErrorRate()
    scored = Timeline([ref.get_timeline().union(hyp.get_timeline()).extent()])  # the whole span of both
    return float(metric(ref, hyp, uem=scored))

"""Which diarizer runs (pyannote.audio where it imports and its pipeline is cached, else resemblyzer) and how pyannote's
turns become segment labels. pyannote.audio does not import here (it needs torch 2.9): a stand-in module is put in
sys.modules, so the choice and the mapping run for real and only the pipeline's own model is faked."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from onecard.asr.config import TranscribeConfig
from onecard.asr.diarize import PYANNOTE_PIPELINE, assign_turns, open_diarizer
from onecard.asr.formats import Segment
from onecard.core.errors import ConfigError, ModelNotFoundError
from tests.unit.asr.conftest import fake_hub_cache, fake_pyannote, write_wav

pytest.importorskip("pyannote.core")

SEGMENTATION, EMBEDDING = "pyannote/segmentation-3.0", "pyannote/wespeaker-voxceleb-resnet34-LM"
PIPELINE_YAML = (f"version: 3.1.0\npipeline:\n  name: pyannote.audio.pipelines.SpeakerDiarization\n  params:\n"
                 f"    clustering: AgglomerativeClustering\n    embedding: {EMBEDDING}\n"
                 f"    segmentation: {SEGMENTATION}\n")
TURNS = [(0.0, 2.0, "alice"), (2.2, 5.0, "bob"), (5.5, 7.0, "alice")]


def _segments(*spans: tuple[float, float]) -> list[Segment]:
    return [Segment(start=a, end=b, text=f"s{i}") for i, (a, b) in enumerate(spans)]


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty Hugging Face and pyannote caches (the user's real ones are never looked at)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("PYANNOTE_CACHE", str(tmp_path / "pyannote-cache"))
    return tmp_path / "hub"


def test_each_segment_takes_the_speaker_it_overlaps_most_named_by_first_appearance() -> None:
    # s0 inside bob's turn; s1 mostly alice (1.5 s) against bob (0.3 s); s2 in the gap, starting at bob's end (0 s
    # away, alice's next turn is 0.3 s); s3 after the last turn: its nearest is alice's
    segments = _segments((2.5, 4.0), (0.5, 2.5), (5.0, 5.2), (7.5, 8.0))
    assert assign_turns(segments, TURNS) == 2
    assert [s.speaker for s in segments] == ["SPEAKER_1", "SPEAKER_2", "SPEAKER_1", "SPEAKER_2"]
    no_turns = _segments((0.0, 1.0))
    assert assign_turns(no_turns, []) == 0 and no_turns[0].speaker is None


def test_auto_falls_back_to_resemblyzer_and_says_pyannote_is_not_installed(monkeypatch: pytest.MonkeyPatch,
                                                                           caches: Path) -> None:
    monkeypatch.setitem(sys.modules, "pyannote.audio", None)  # import fails as where it is not installed
    chosen = open_diarizer("auto")
    assert chosen.name == "resemblyzer" and chosen.pipeline is None
    assert "pyannote.audio not installed" in chosen.reason and "pip install pyannote.audio" in chosen.reason
    assert chosen.to_json() == {"name": "resemblyzer", "pipeline": None, "reason": chosen.reason}


def test_auto_falls_back_when_pyannote_audio_is_built_against_another_torch(monkeypatch: pytest.MonkeyPatch,
                                                                           caches: Path) -> None:
    class Broken:  # a pyannote.audio whose import fails the way a torch mismatch does
        def find_spec(self, name: str, *_: object) -> None:
            if name == "pyannote.audio":
                raise OSError("libtorchaudio.so: undefined symbol: _ZN3c10")

    monkeypatch.delitem(sys.modules, "pyannote.audio", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    chosen = open_diarizer("auto")
    assert chosen.name == "resemblyzer" and "does not import (OSError: libtorchaudio.so" in chosen.reason
    with pytest.raises(ConfigError, match="'resemblizer'"):  # a value naming nothing is refused before the import
        open_diarizer("resemblizer")


def test_auto_falls_back_when_the_pipeline_or_a_model_it_names_is_not_cached(monkeypatch: pytest.MonkeyPatch,
                                                                              caches: Path) -> None:
    calls = fake_pyannote(monkeypatch, TURNS)
    chosen = open_diarizer("auto")
    assert chosen.name == "resemblyzer"
    assert f"pipeline not cached: {PYANNOTE_PIPELINE}" in chosen.reason
    assert f"huggingface-cli download {PYANNOTE_PIPELINE}" in chosen.reason and "accept its terms" in chosen.reason
    fake_hub_cache(caches, PYANNOTE_PIPELINE, SEGMENTATION, config=PIPELINE_YAML)  # the embedding model missing
    chosen = open_diarizer("auto")
    assert chosen.name == "resemblyzer" and EMBEDDING in chosen.reason and SEGMENTATION not in chosen.reason
    assert calls == []  # nothing loaded, nothing downloaded


@pytest.mark.parametrize("version", [3, 4])
def test_auto_runs_a_cached_pyannote_pipeline_and_labels_the_segments(monkeypatch: pytest.MonkeyPatch, caches: Path,
                                                                      tmp_path: Path, version: int) -> None:
    calls = fake_pyannote(monkeypatch, TURNS, version=version)
    fake_hub_cache(caches, PYANNOTE_PIPELINE, SEGMENTATION, config=PIPELINE_YAML)
    fake_hub_cache(tmp_path / "pyannote-cache", EMBEDDING)  # pyannote 3's own cache counts too
    chosen = open_diarizer("auto")
    assert chosen.name == "pyannote" and chosen.pipeline_ref == PYANNOTE_PIPELINE and "cached" in chosen.reason
    assert calls == [{"load": PYANNOTE_PIPELINE, "cache_dir": str(caches)}]
    wav = write_wav(tmp_path / "a.wav", np.zeros((8 * 16_000, 2), dtype=np.float32))
    segments = _segments((0.2, 1.8), (2.4, 4.9), (5.6, 6.9))
    assert chosen.label(segments, wav, 2, channel=1) == 2
    assert [s.speaker for s in segments] == ["SPEAKER_1", "SPEAKER_2", "SPEAKER_1"]
    assert calls[-1] == {"shape": (1, 8 * 16_000), "sample_rate": 16_000, "num_speakers": 2}  # one channel, 16 kHz
    chosen.label(segments, wav, 0)
    assert "num_speakers" not in calls[-1]  # auto: pyannote decides


def test_a_local_pipeline_folder_or_config_is_used_as_given(monkeypatch: pytest.MonkeyPatch, caches: Path,
                                                            tmp_path: Path) -> None:
    calls = fake_pyannote(monkeypatch, TURNS)
    folder = tmp_path / "my-pipeline"
    folder.mkdir()
    (folder / "config.yaml").write_text(PIPELINE_YAML)
    for ref in (str(folder), str(folder / "config.yaml")):
        chosen = open_diarizer(ref)
        assert chosen.name == "pyannote" and chosen.pipeline_ref == ref and "asked for" in chosen.reason
        assert calls[-1] == {"load": ref}


def test_a_forced_diarizer_that_cannot_run_is_an_error_with_the_fix(monkeypatch: pytest.MonkeyPatch, caches: Path,
                                                                    tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pyannote.audio", None)
    with pytest.raises(ModelNotFoundError, match="pyannote.audio not installed") as e:
        open_diarizer("pyannote")
    assert "--diarizer resemblyzer" in str(e.value.fix)
    fake_pyannote(monkeypatch, TURNS)
    with pytest.raises(ModelNotFoundError, match="pipeline not cached: someone/pipeline"):
        open_diarizer("someone/pipeline")
    with pytest.raises(ConfigError, match="pipeline folder holding config.yaml"):
        open_diarizer(str(tmp_path))  # a folder without config.yaml
    with pytest.raises(ConfigError, match="'resemblizer'"):
        open_diarizer("resemblizer")
    assert open_diarizer("resemblyzer").name == "resemblyzer"


def test_the_diarizer_is_a_config_key() -> None:
    assert TranscribeConfig.model_validate({"audio": ["a.wav"]}).diarizer == "auto"
    assert TranscribeConfig.model_validate({"audio": ["a.wav"], "diarizer": "pyannote"}).diarizer == "pyannote"

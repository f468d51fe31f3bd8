"""Whisper estimator: dimensions, runtime behaviour, and the measured rows (measured.md section D)."""

from __future__ import annotations

import pytest

from onecard.fit import whisper
from onecard.fit.job import FitJob

LARGE_V2 = whisper.CATALOG["large-v2"]


def _process_gib(**kw: object) -> float:
    job = FitJob(model="whisper-large-v2", job="infer", beam=5, **kw)  # type: ignore[arg-type]
    return whisper.estimate(LARGE_V2, job, None).process_gib


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("whisper-tiny", "tiny"),
        ("small.en", "small.en"),
        ("openai/whisper-medium", "medium"),
        ("openai/whisper-large-v2", "large-v2"),
        ("Systran/faster-whisper-large-v3", "large-v3"),
        ("whisper-large-v3-turbo", "large-v3-turbo"),
        ("openai/whisper-base.en", "base.en"),
        ("distil-whisper/distil-large-v3", "distil-large-v3"),  # 2 decoder layers, not large-v3's 32
        ("Systran/faster-distil-whisper-large-v3", "distil-large-v3"),
        ("distil-medium.en", "distil-medium.en"),
    ],
)
def test_names(name: str, key: str) -> None:
    arch = whisper.find(name)
    assert arch is not None and arch.key == key


@pytest.mark.parametrize("name", ["whisper-huge", "wav2vec2", ""])
def test_unknown_names(name: str) -> None:
    assert whisper.find(name) is None


@pytest.mark.parametrize(
    ("key", "params"),
    # HF WhisperForConditionalGeneration parameter counts (paper Table 1: 39M, 74M, 244M, 769M, 1550M).
    [
        ("tiny", 37_760_640),
        ("base", 72_593_920),
        ("small", 241_734_912),
        ("medium", 763_857_920),
        ("large-v3", 1_543_490_560),
        ("large-v3-turbo", 808_878_080),
        # Distil-Whisper's README: 756M, 394M, 166M
        ("distil-large-v3", 756_405_760),
        ("distil-medium.en", 394_375_168),
        ("distil-small.en", 166_132_224),
    ],
)
def test_param_counts(key: str, params: int) -> None:
    assert whisper.CATALOG[key].params == params


def test_int8_below_fp16() -> None:
    fp16 = _process_gib(runtime="faster-whisper", quant="fp16")
    assert _process_gib(runtime="faster-whisper", quant="int8") < fp16 - 1.0


def test_beam_and_batch_grow_the_peak() -> None:
    assert _process_gib(runtime="faster-whisper", quant="fp16", batch=8) > _process_gib(
        runtime="faster-whisper", quant="fp16"
    )
    one = whisper.estimate(LARGE_V2, FitJob(model="large-v2", runtime="faster-whisper", beam=1), None)
    five = whisper.estimate(LARGE_V2, FitJob(model="large-v2", runtime="faster-whisper", beam=5), None)
    assert five.parts["kv_cache"] > one.parts["kv_cache"]


def test_transformers_keeps_cross_attention_per_beam() -> None:
    tf = whisper.estimate(LARGE_V2, FitJob(model="large-v2", runtime="transformers", beam=5), None)
    ct2 = whisper.estimate(LARGE_V2, FitJob(model="large-v2", runtime="faster-whisper", beam=5), None)
    assert tf.parts["kv_cache"] > ct2.parts["kv_cache"] + 0.5


def test_ctranslate2_before_3_6_holds_the_cross_attention_cache_per_beam() -> None:
    """CTranslate2 3.6.0's changelog: beam search stopped duplicating the projected memory keys and values; the four
    extra copies of medium's cache at beam 5 are what the faster-whisper README's reading fell between the two."""
    medium = whisper.find("whisper-medium")
    assert medium is not None
    job = FitJob(model="whisper-medium", runtime="faster-whisper", quant="fp16", beam=5)
    new = whisper.estimate(medium, job, None)
    old = whisper.estimate(medium, job.model_copy(update={"ctranslate2_version": "3.5.1"}), None)
    same = whisper.estimate(medium, job.model_copy(update={"ctranslate2_version": "3.6.0"}), None)
    copy_gib = 2 * medium.dec_layers * medium.d * 2 * whisper.N_AUDIO_CTX / 2**30  # K and V, fp16, 1500 frames
    assert old.parts["kv_cache"] - new.parts["kv_cache"] == pytest.approx(4 * copy_gib)
    assert same.parts["kv_cache"] == new.parts["kv_cache"]


def test_fine_tune_full_above_lora() -> None:
    small = whisper.CATALOG["small"]
    full = whisper.estimate(small, FitJob(model="small", job="train", method="full", batch=4), None)
    lora = whisper.estimate(small, FitJob(model="small", job="train", method="lora", batch=4), None)
    assert full.peak_allocated_gib > lora.peak_allocated_gib


# measured.md rows 43-45: SYSTRAN/faster-whisper README benchmark v1.1.0, RTX 3070 Ti, NVML used (MiB), process.
@pytest.mark.parametrize(
    ("kw", "measured_mib"),
    [
        ({"runtime": "openai-whisper", "quant": "fp16"}, 4708),  # row 43
        ({"runtime": "transformers", "quant": "fp16"}, 4960),  # row 43
        ({"runtime": "faster-whisper", "quant": "fp16"}, 4525),  # row 44
        ({"runtime": "faster-whisper", "quant": "fp16", "batch": 8}, 6090),  # row 44
        ({"runtime": "faster-whisper", "quant": "int8"}, 2926),  # row 45
        ({"runtime": "faster-whisper", "quant": "int8", "batch": 8}, 4500),  # row 45
    ],
)
def test_faster_whisper_benchmark_rows_within_25_percent(kw: dict[str, object], measured_mib: int) -> None:
    assert abs(_process_gib(**kw) / (measured_mib / 1024) - 1) < 0.25


def test_openai_whisper_load_model_keeps_fp32_weights_and_the_cached_checkpoint() -> None:
    # faster-whisper README @58f4447 (V100S, openai/whisper@6dea21fd, transcribe fp16 beam 5): 11325 MiB process.
    default = whisper.estimate(LARGE_V2, FitJob(model="large-v2", runtime="openai-whisper", beam=5), None)
    assert default.parts["weights"] == pytest.approx(LARGE_V2.params * 4 / 2**30)
    assert default.parts["runtime"] == pytest.approx(LARGE_V2.params * 2 / 2**30)  # the fp16 checkpoint
    assert abs(default.process_gib / (11325 / 1024) - 1) < 0.10
    halved = whisper.estimate(LARGE_V2, FitJob(model="large-v2", runtime="openai-whisper", quant="fp16"), None)
    assert "runtime" not in halved.parts and halved.parts["weights"] == pytest.approx(LARGE_V2.params * 2 / 2**30)

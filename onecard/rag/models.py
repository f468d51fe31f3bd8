"""The two models retrieval uses: a sentence-transformers embedder and an optional cross-encoder reranker.

Both come from local files only (a shipped package, a folder, the hub cache), through `core.sources`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np

from onecard.core.device import select_device, select_dtype
from onecard.core.errors import ModelNotFoundError
from onecard.core.extras import require
from onecard.core.sources import resolve_model
from onecard.rag.config import EmbedBackend
from onecard.rag.onnx_embed import OnnxEncoder, choose_backend, load_encoder

__all__ = ["Embedder", "SentenceEmbedder", "query_backend", "backend_family", "Reranker", "load_reranker",
           "KNOWN_RERANKERS", "RERANKER_HINT"]

log = logging.getLogger("onecard.rag")

# Cross-encoders looked for in the hub cache by `--reranker auto`, best first. No PyPI package ships their weights.
KNOWN_RERANKERS = ("BAAI/bge-reranker-base", "cross-encoder/ms-marco-MiniLM-L-6-v2", "BAAI/bge-reranker-v2-m3",
                   "mixedbread-ai/mxbai-rerank-xsmall-v1")
RERANKER_HINT = ("no cross-encoder in the local hub cache, so results are hybrid without reranking; to rerank, "
                 "download one once (online): `huggingface-cli download cross-encoder/ms-marco-MiniLM-L-6-v2` "
                 "(or BAAI/bge-reranker-base), or pass --reranker PATH")


class Embedder(Protocol):
    """What indexing and search need of an embedding model: unit-length float32 vectors."""

    name: str
    dim: int

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray: ...


class SentenceEmbedder:
    """A sentence-transformers model from local files, loaded on first use, run by `backend` (see `onnx_embed`):
    torch (fp32, or bf16/fp16 where the device runs it natively), ONNX Runtime fp32 or int8 on the CPU, or auto."""

    def __init__(self, ref: str, device: str = "auto", batch_size: int = 32, backend: EmbedBackend = "auto") -> None:
        self.name = ref
        self.path = resolve_model(ref).path
        self.device = device
        self.batch_size = batch_size
        self.requested = backend
        self._model: Any = None
        self._onnx: OnnxEncoder | None = None

    @property
    def model(self) -> Any:
        """The sentence-transformers model (torch; on the CPU in fp32 when ONNX Runtime embeds)."""
        if self._model is None:
            st = require("sentence_transformers", "rag", "sentence-transformers")
            want = choose_backend(self.requested, self.device)
            device = "cpu" if want != "torch" else select_device(self.device)
            with _no_load_bar():
                self._model = st.SentenceTransformer(str(self.path), device=device, local_files_only=True,
                                                     model_kwargs={} if want != "torch" else _weights_dtype(device))
            if want != "torch":
                self._onnx = load_encoder(self._model, self.path, want, auto=self.requested == "auto")
        return self._model

    @property
    def backend(self) -> str:
        """What embeds, for the record: onnx-int8, onnx-fp32, or torch-<dtype> (torch-float32, torch-bfloat16...)."""
        model = self.model
        if self._onnx is not None:
            return self._onnx.backend
        return f"torch-{str(next(model.parameters()).dtype).removeprefix('torch.')}"

    @property
    def dim(self) -> int:  # type: ignore[override]
        model = self.model  # sentence-transformers 5.x renamed the method
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """(N, dim) unit vectors; batched, on the GPU when there is one."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.model
        if self._onnx is not None:
            return self._onnx.encode(texts, self.batch_size)
        vectors = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


def query_backend(meta: dict[str, Any]) -> EmbedBackend:
    """The backend that embeds queries for (and re-indexes) an index with this meta.json: the one that built it.
    Indexes from before the backend was recorded were built by torch."""
    return backend_family(str(meta.get("embed_backend", "torch")))


def backend_family(backend: str) -> EmbedBackend:
    """Vectors of one family may be compared and mixed: torch's dtypes (bf16 and fp16 vectors have a cosine of
    0.9999 to fp32's) are one; onnx-int8's differ from fp32's (all-MiniLM-L6-v2: cosine 0.994 on average, 0.98 at
    worst), enough to reorder close hits, so int8 and fp32 vectors are never mixed, and onnx-fp32 is kept apart too."""
    return "torch" if backend.startswith("torch") else backend  # type: ignore[return-value]


@contextmanager
def _no_load_bar() -> Iterator[None]:
    """Without transformers' "Loading weights" bar: a 90 MB model loads in a blink, and the bar clutters answers."""
    from transformers.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    was_on = is_progress_bar_enabled()
    disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            enable_progress_bar()


def _weights_dtype(device: str) -> dict[str, Any]:
    """16-bit weights where the device runs them natively (`select_dtype`: bf16 on Ampere+ GPUs and CPUs with
    AVX512-BF16/AMX, fp16 on older GPUs): 2-4x the fp32 throughput; all-MiniLM-L6-v2's bf16 vectors have a cosine of
    0.9999 to its fp32 ones. Elsewhere the model's own fp32."""
    dtype = select_dtype("auto", device)
    if dtype == "float32":
        return {}
    import torch

    return {"torch_dtype": getattr(torch, dtype)}


class Reranker:
    """A sentence-transformers CrossEncoder: one relevance score per (query, passage) pair."""

    def __init__(self, ref: str, path: str, device: str = "auto") -> None:
        st = require("sentence_transformers", "rag", "sentence-transformers")
        self.name = ref
        device = select_device(device)
        with _no_load_bar():
            self.model = st.CrossEncoder(path, device=device, local_files_only=True,
                                         model_kwargs=_weights_dtype(device))

    def score(self, query: str, passages: list[str]) -> np.ndarray:
        if not passages:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(self.model.predict([(query, p) for p in passages], show_progress_bar=False),
                          dtype=np.float32).reshape(-1)


def load_reranker(ref: str, device: str = "auto") -> tuple[Reranker | None, str | None]:
    """The reranker `ref` names ("auto": the first known one in the hub cache; "none"), and a note when there is none.

    An explicit reference that does not resolve is an error; "auto" finding nothing is not.
    """
    if ref == "none":
        return None, None
    if ref == "auto":
        for candidate in KNOWN_RERANKERS:
            try:
                source = resolve_model(candidate)
            except ModelNotFoundError:
                continue
            return Reranker(candidate, str(source.path), device), None
        return None, RERANKER_HINT
    source = resolve_model(ref)
    if not (source.path / "config.json").is_file():
        raise ModelNotFoundError(f"reranker {ref} ({source.path}) has no config.json",
                                 "pass a sentence-transformers CrossEncoder folder")
    return Reranker(ref, str(source.path), device), None

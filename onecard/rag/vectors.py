"""Where an index version keeps its vectors: FAISS (embedded default) or Qdrant (its local on-disk mode, or a server).

Both hold one vector per chunk row, found by row number, searched by inner product (cosine on unit vectors).
FAISS and Qdrant's local mode live inside the version folder, so the version swap covers them. On a Qdrant server
each version is its own collection, `<index name>-<version>`, recorded in the index's manifest; the swap of CURRENT
switches collections and the collections of older versions are deleted after it (only those: never one that another
index of the same folder name created).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from onecard.core.extras import require

__all__ = ["write_vectors", "open_vectors", "FaissVectors", "QdrantVectors", "drop_collection"]


def write_vectors(out: Path, vectors: np.ndarray, store: str, url: str | None, collection: str) -> None:
    """Write `vectors` (N, dim; row n is chunk n) for a new version folder `out`."""
    if store == "faiss":
        faiss = require("faiss", "rag", "faiss-cpu")
        index = faiss.IndexFlatIP(vectors.shape[1])  # exact; 10,000 x 384 floats search in about a millisecond
        if len(vectors):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        faiss.write_index(index, str(out / "vectors.faiss"))
        return
    qm = require("qdrant_client.models", "rag", "qdrant-client")
    client = _qdrant(out, url)
    client.create_collection(collection, vectors_config=qm.VectorParams(size=vectors.shape[1],
                                                                        distance=qm.Distance.DOT))
    for start in range(0, len(vectors), 1024):
        block = vectors[start:start + 1024]
        client.upsert(collection, qm.Batch(ids=list(range(start, start + len(block))), vectors=block.tolist()))
    client.close()


def open_vectors(folder: Path, meta: dict[str, Any]) -> FaissVectors | QdrantVectors:
    if meta.get("store", "faiss") == "faiss":
        return FaissVectors(folder)
    return QdrantVectors(folder, meta.get("qdrant_url"), meta["collection"], int(meta["dim"]))


def drop_collection(url: str | None, name: str) -> None:
    """On a Qdrant server: delete the collection of a version (an older one, or a failed build's)."""
    if url is None:
        return
    client = _qdrant(None, url)
    if client.collection_exists(name):
        client.delete_collection(name)
    client.close()


class FaissVectors:
    def __init__(self, folder: Path) -> None:
        self.faiss = require("faiss", "rag", "faiss-cpu")
        self.index = self.faiss.read_index(str(folder / "vectors.faiss"))
        self.dim = int(self.index.d)

    def search(self, qvec: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        params = None if allowed is None else self.faiss.SearchParameters(sel=self.faiss.IDSelectorBatch(allowed))
        with self._one_thread():
            scores, ids = self.index.search(qvec.reshape(1, -1).astype(np.float32), k, params=params)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    @contextmanager
    def _one_thread(self) -> Iterator[None]:
        """One query over 10,000 vectors takes about a millisecond on one thread; FAISS's OpenMP threads next to
        torch's (embedding the query) spin-wait for the same cores: on 2 cores that made a search 77 ms, not 14.
        FAISS and torch share one OpenMP runtime, so the setting is put back after the search: left at one thread,
        it halved the embedding speed of every later build in the process (torch reads the same setting)."""
        before = self.faiss.omp_get_max_threads()
        self.faiss.omp_set_num_threads(1)
        try:
            yield
        finally:
            self.faiss.omp_set_num_threads(before)

    def get(self, rows: list[int]) -> np.ndarray:
        return np.stack([self.index.reconstruct(int(r)) for r in rows]) if rows else np.zeros((0, self.dim))

    def all(self) -> np.ndarray:
        n = self.index.ntotal
        return self.index.reconstruct_n(0, n) if n else np.zeros((0, self.dim), dtype=np.float32)

    def close(self) -> None:
        pass


class QdrantVectors:
    def __init__(self, folder: Path, url: str | None, collection: str, dim: int) -> None:
        self.qm = require("qdrant_client.models", "rag", "qdrant-client")
        self.client = _qdrant(folder, url)
        self.collection = collection
        self.dim = dim

    def search(self, qvec: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        where = None if allowed is None else self.qm.Filter(must=[self.qm.HasIdCondition(has_id=allowed.tolist())])
        found = self.client.query_points(self.collection, query=qvec.tolist(), limit=k, query_filter=where).points
        return [(int(p.id), float(p.score)) for p in found]

    def get(self, rows: list[int]) -> np.ndarray:
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        found = {int(p.id): p.vector for p in self.client.retrieve(self.collection, ids=rows, with_vectors=True)}
        return np.asarray([found[r] for r in rows], dtype=np.float32)

    def all(self) -> np.ndarray:
        n = self.client.count(self.collection).count
        out = np.zeros((n, self.dim), dtype=np.float32)
        offset = None
        while True:
            points, offset = self.client.scroll(self.collection, limit=1024, offset=offset, with_vectors=True)
            for p in points:
                out[int(p.id)] = p.vector
            if offset is None:
                return out

    def close(self) -> None:
        self.client.close()


def _qdrant(folder: Path | None, url: str | None) -> Any:
    qc = require("qdrant_client", "rag", "qdrant-client")
    if url:
        return qc.QdrantClient(url=url)
    assert folder is not None
    return qc.QdrantClient(path=str(folder / "qdrant"))

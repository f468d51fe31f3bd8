"""Retrieval over an open index: dense (FAISS), BM25 (bm25s), hybrid (their fusion), rerank (a cross-encoder or a
chat model, `rerank.py`).

Hybrid fuses the two retrievers' candidates by a convex combination of their normalised scores (the default) or by
reciprocal rank fusion.

Filters (a path glob, a language) restrict both retrievers before ranking, so k hits come back when k match.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from onecard.core.extras import require
from onecard.rag.config import Fusion
from onecard.rag.index import STOPWORDS, Index
from onecard.rag.models import Embedder
from onecard.rag.rerank import PassageScorer

__all__ = ["Hit", "Searcher", "rrf", "RRF_K", "convex", "normalise", "CONVEX_ALPHA", "FLOORS", "Fusion", "Mode",
           "openable"]

Mode = Literal["dense", "bm25", "hybrid", "rerank"]
RRF_K = 60  # Cormack, Clarke & Buettcher (SIGIR 2009), "Reciprocal Rank Fusion outperforms Condorcet...": k = 60
DEPTH = 100  # candidates each retriever hands to the fusion
# Convex fusion, alpha * dense + (1 - alpha) * bm25 (Bruch, Gai & Ingber, "An Analysis of Fusion Functions for Hybrid
# Retrieval", ACM TOIS 2023), with their theoretical min-max normalisation (floors: cosine -1, BM25 0). alpha = 0.9
# had the best mean nDCG@10 of alpha = 0.0, 0.1, ... 1.0 under min-max and theoretical min-max over the development
# sets SQuAD 2.0 dev and CISI (benchmarks/rag_fusion.py; benchmarks/RESULTS.md, "Fusion (issue 15)"): 0.9161 and
# 0.4507, against RRF 0.8751 and 0.4320 and the better single retriever 0.8535 and 0.4254.
CONVEX_ALPHA = 0.9
FLOORS: tuple[float | None, float | None] = (-1.0, 0.0)


@dataclass
class Hit:
    """A retrieved chunk: its row in the index, its score under the mode asked for, and its metadata."""

    row: int
    score: float
    chunk: dict[str, Any]
    similarity: float = 0.0  # cosine of query and chunk under the embedding model, comparable across queries

    @property
    def location(self) -> str:
        """`path:start-end` (with the notebook cell or PDF page), the form editors open from where the user is."""
        c = self.chunk
        lines = f"{c['start_line']}" if c["start_line"] == c["end_line"] else f"{c['start_line']}-{c['end_line']}"
        part = f" ({c['part']})" if c["part"] else ""
        return f"{openable(c['path'], c['rel'])}{part}:{lines}"

    def to_json(self) -> dict[str, Any]:
        c = self.chunk
        return {"row": self.row, "id": c["id"], "score": round(float(self.score), 6),
                "similarity": round(float(self.similarity), 4), "path": c["path"], "rel": c["rel"],
                "part": c["part"], "start_line": c["start_line"], "end_line": c["end_line"],
                "heading": list(c["heading"]), "symbol": c["symbol"], "language": c["language"], "text": c["text"]}


def openable(path: str, rel: str | None = None) -> str:
    """The path as the user can open it: relative to the working directory when under it, else from `~` or `/`."""
    p = Path(path)
    if not p.is_absolute():
        return rel or path
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        if p.is_relative_to(base):
            return prefix + p.relative_to(base).as_posix()
    return p.as_posix()


def rrf(rankings: list[list[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: score(d) = sum over rankings of 1 / (k + rank of d), ranks from 1."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, row in enumerate(ranking, start=1):
            scores[row] = scores.get(row, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def normalise(scores: np.ndarray, floor: float | None = None) -> np.ndarray:
    """One retriever's candidate scores mapped onto [0, 1]: (s - lo) / (max - lo), where lo is the candidates' own
    minimum (min-max) or, given `floor`, the least score the function can give (theoretical min-max, Bruch et al.).
    Scores that are all equal are all the best this retriever has: 1."""
    if not len(scores):
        return scores
    lo = float(scores.min()) if floor is None else floor
    span = float(scores.max()) - lo
    return np.ones_like(scores) if span <= 0 else (scores - lo) / span


def convex(dense: list[tuple[int, float]], bm25: list[tuple[int, float]], alpha: float = CONVEX_ALPHA,
           floors: tuple[float | None, float | None] = FLOORS) -> list[tuple[int, float]]:
    """Convex fusion: score(d) = alpha * dense(d) + (1 - alpha) * bm25(d), each normalised over its own candidates
    (`floors`: the dense and BM25 floors of `normalise`); a candidate one retriever did not return gets 0 from it."""
    scores: dict[int, float] = {}
    for ranked, weight, floor in ((dense, alpha, floors[0]), (bm25, 1.0 - alpha, floors[1])):
        normed = normalise(np.asarray([s for _, s in ranked], dtype=np.float64), floor)
        for (row, _), x in zip(ranked, normed, strict=True):
            scores[row] = scores.get(row, 0.0) + weight * float(x)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


class Searcher:
    """Search one index with one embedder, and a reranker when there is one; hybrid fuses by `fusion` (convex with
    weight `alpha` on dense, "auto": CONVEX_ALPHA; or rrf)."""

    def __init__(self, index: Index, embedder: Embedder, reranker: PassageScorer | None = None, rerank_top: int = 20,
                 fusion: Fusion = "convex", alpha: float | Literal["auto"] = "auto"):
        if index.meta.get("embed_model") not in (None, embedder.name):
            from onecard.core.errors import ConfigError

            raise ConfigError(f"the index was built with {index.meta['embed_model']}, not {embedder.name}",
                              f"search with --embed-model {index.meta['embed_model']} or re-index")
        self.index = index
        self.embedder = embedder
        self.reranker = reranker
        self.rerank_top = rerank_top
        self.fusion = fusion
        self.alpha = CONVEX_ALPHA if alpha == "auto" else float(alpha)

    def search(self, query: str, k: int = 10, mode: Mode = "hybrid", path_glob: str | None = None,
               language: str | None = None) -> list[Hit]:
        """The k best chunks for `query` under `mode`, best first."""
        if self.index.size == 0:
            return []
        allowed = self._allowed(path_glob, language)
        if allowed is not None and not len(allowed):
            return []
        qvec = self.embedder.embed([query])[0]
        ranked = self.rank(query, qvec, max(k, self.rerank_top if mode == "rerank" else k), mode, allowed)[:k]
        rows = self.index.rows([r for r, _ in ranked])
        sims = self.similarities(qvec, [r for r, _ in ranked])
        return [Hit(r, s, c, sim) for (r, s), c, sim in zip(ranked, rows, sims, strict=True)]

    def rank(self, query: str, qvec: np.ndarray, k: int, mode: Mode,
             allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(row, score) pairs, best first: the ranking behind `search`, without the metadata."""
        depth = max(DEPTH, k)
        if mode == "dense":
            return self.dense(qvec, k, allowed)
        if mode == "bm25":
            return self.bm25(query, k, allowed)
        dense, sparse = self.dense(qvec, depth, allowed), self.bm25(query, depth, allowed)
        if self.fusion == "rrf":
            fused = rrf([[r for r, _ in dense], [r for r, _ in sparse]])
        else:
            fused = convex(dense, sparse, self.alpha)
        if mode == "hybrid" or self.reranker is None:
            return fused[:k]
        top = [r for r, _ in fused[: self.rerank_top]]
        scores = self.reranker.score(query, [self._passage(c) for c in self.index.rows(top)])
        order = np.argsort(-scores, kind="stable")
        return [(top[i], float(scores[i])) for i in order] + fused[self.rerank_top:k]

    def dense(self, qvec: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        return self.index.vectors.search(qvec, min(k, self.index.size if allowed is None else len(allowed)), allowed)

    def bm25(self, query: str, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        bm25s = require("bm25s", "rag")
        tokens = bm25s.tokenize([query], stopwords=STOPWORDS, show_progress=False, return_ids=False)
        tokens = [[t for t in tokens[0] if t in self.index.bm25.vocab_dict]]
        if not tokens[0]:
            return []
        mask = None
        if allowed is not None:
            mask = np.zeros(self.index.size, dtype=np.float32)
            mask[allowed] = 1.0
        n = min(k, self.index.size)
        ids, scores = self.index.bm25.retrieve(tokens, k=n, show_progress=False, weight_mask=mask, n_threads=0)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if s > 0]

    def similarities(self, qvec: np.ndarray, rows: list[int]) -> list[float]:
        """Cosine of the query with each row's vector."""
        if not rows:
            return []
        return [float(x) for x in self.index.vectors.get(rows) @ qvec]

    def _allowed(self, path_glob: str | None, language: str | None) -> np.ndarray | None:
        if path_glob is None and language is None:
            return None
        keep = [n for n, (path, rel, lang) in enumerate(zip(self.index.paths, self.index.rels, self.index.languages,
                                                            strict=True))
                if (language is None or lang == language)
                and (path_glob is None or fnmatch.fnmatch(rel, path_glob) or fnmatch.fnmatch(path, path_glob))]
        return np.asarray(keep, dtype=np.int64)

    @staticmethod
    def _passage(chunk: dict[str, Any]) -> str:
        context = " > ".join(([chunk["part"]] if chunk["part"] else []) + list(chunk["heading"])
                             + ([chunk["symbol"]] if chunk["symbol"] else []))
        return f"{context}\n{chunk['text']}" if context else chunk["text"]

"""Citations checked against the text: is the sentence that carries `[n]` supported by source n?

A citation covers the words before it in its sentence ("Rollo was a Viking [2]." cites [2] for "Rollo was a
Viking."), or the sentence just ended when it follows the full stop. Two judges:

- embedding (default): the score is the cosine, under the index's own embedding model, of that sentence to the
  best-matching window (one sentence, two neighbouring ones, or the whole) of the cited chunk. Supported: a score at
  or above a threshold, and no other retrieved source scoring higher by more than a slack (the sentence of a wrong
  [n] matches the right source better). Both were set on development data (benchmarks/rag_citations.py, SQuAD 2.0
  dev; see benchmarks/RESULTS.md).
- nli: an entailment cross-encoder the user has locally (e.g. cross-encoder/nli-deberta-v3-small in the hub cache,
  never downloaded): the probability that the chunk entails the sentence; supported from 0.5, the classifier's
  own boundary (no NLI model was at hand to set it on data).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np

__all__ = ["Verdict", "CitationChecker", "supported", "load_checker", "split_sentences", "sentence_before",
           "render_citation", "EMBEDDING_THRESHOLD", "EMBEDDING_SLACK", "NLI_THRESHOLD"]

# Set with all-MiniLM-L6-v2 on SQuAD 2.0 dev, part A (the Normans article): the (threshold, slack) of highest recall
# whose precision of "supported" is at least 0.95 there; part B (Computational complexity theory) reports them
# (benchmarks/rag_citations.py). Cosine alone does not carry over: B's passages are all alike.
EMBEDDING_THRESHOLD = 0.4
EMBEDDING_SLACK = 0.05
NLI_THRESHOLD = 0.5

_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+|\n\s*")
_CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")  # as answer.check_citations keeps them
_ANY_CITATION = re.compile(r"\[\s*\d+\??(?:\s*,\s*\d+\??)*\s*\]")  # and as marked: [2?], [1, 3?]
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")


@dataclass(frozen=True)
class Verdict:
    """One citation judged: source n (its chunk id) for this sentence, its score, and whether it is supported."""

    n: int
    chunk_id: str
    sentence: str
    score: float
    supported: bool
    best_other: float | None = None  # the best score of another source (embedding judge)

    def to_json(self) -> dict[str, Any]:
        other = None if self.best_other is None else round(self.best_other, 4)
        return {"n": self.n, "id": self.chunk_id, "sentence": self.sentence, "score": round(self.score, 4),
                "best_other": other, "supported": self.supported}


def supported(score: float, best_other: float | None, threshold: float, slack: float) -> bool:
    """The rule: at least `threshold`, and no other source better by more than `slack` (a wrong [n] is one whose
    sentence another retrieved source matches better)."""
    return score >= threshold and (best_other is None or score >= best_other - slack)


def split_sentences(text: str) -> list[str]:
    """Sentences: split after . ! ? (and a closing quote or bracket) before whitespace, and at line breaks."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _clean(text: str) -> str:
    return " ".join(_SPACE_BEFORE_PUNCT.sub(r"\1", _ANY_CITATION.sub("", text)).split())


def sentence_before(prefix: str) -> str:
    """The sentence a citation placed after `prefix` supports: the last sentence of `prefix`, citations removed.

    Only the text before the citation counts, so the streamed answer and the final record judge the same words.
    """
    sentences = split_sentences(_ANY_CITATION.sub("", prefix))
    return _clean(sentences[-1]) if sentences else ""


def render_citation(numbers: Sequence[int], unsupported: set[int]) -> str:
    """`[1, 3?]`: a `?` after each source number judged not to support its sentence."""
    return "[" + ", ".join(f"{n}?" if n in unsupported else str(n) for n in numbers) + "]"


class CitationChecker:
    """Judges (sentence, cited chunk) pairs; embeddings and scores are cached, so judging twice costs nothing."""

    def __init__(self, embedder: Any, threshold: float | Literal["auto"] = "auto", nli: Any = None) -> None:
        self.embedder = embedder
        self.nli = nli
        self.kind = "nli" if nli is not None else "embedding"
        default = NLI_THRESHOLD if nli is not None else EMBEDDING_THRESHOLD
        self.threshold = default if threshold == "auto" else float(threshold)
        self.slack = math.inf if nli is not None else EMBEDDING_SLACK
        self._windows: dict[str, np.ndarray] = {}
        self._scores: dict[tuple[str, str], float] = {}

    def windows(self, chunks: Sequence[dict[str, Any]]) -> list[np.ndarray]:
        """Per chunk, (W, dim) unit vectors of its windows: each sentence, each two neighbouring ones, the whole."""
        todo = {c["id"]: c["text"] for c in chunks if c["id"] not in self._windows}
        if todo:
            texts, owners = [], []
            for cid, text in todo.items():
                sentences = split_sentences(text)
                windows = sentences + [f"{a} {b}" for a, b in zip(sentences, sentences[1:], strict=False)]
                windows.append(" ".join(text.split()))
                texts += windows
                owners += [cid] * len(windows)
            vectors = self.embedder.embed(texts)
            for cid in todo:
                self._windows[cid] = vectors[[i for i, o in enumerate(owners) if o == cid]]
        return [self._windows[c["id"]] for c in chunks]

    def scores(self, pairs: Sequence[tuple[str, dict[str, Any]]]) -> list[float]:
        """How well each chunk supports its sentence: best window cosine (embedding), or the probability that the
        chunk entails the sentence (nli). Batched; cached by (sentence, chunk id)."""
        todo = list({(s, c["id"]): (s, c) for s, c in pairs if (s, c["id"]) not in self._scores}.values())
        if todo and self.nli is not None:
            for (s, c), p in zip(todo, self.nli.entailment([(c["text"], s) for s, c in todo]), strict=True):
                self._scores[(s, c["id"])] = float(p)
        elif todo:
            sentences = list(dict.fromkeys(s for s, _ in todo))
            vectors = dict(zip(sentences, self.embedder.embed(sentences), strict=True))
            for (s, c), w in zip(todo, self.windows([c for _, c in todo]), strict=True):
                self._scores[(s, c["id"])] = float(np.max(w @ vectors[s]))
        return [self._scores[(s, c["id"])] for s, c in pairs]

    def judge(self, sentence: str, numbers: Sequence[int], hits: Sequence[Any]) -> list[Verdict]:
        """Each cited source number (1-based, in range) against `sentence`; an empty sentence is not supported.

        The embedding judge also scores the other sources, to catch a citation that another one supports better.
        """
        chunks = {h.chunk["id"]: h.chunk for h in hits} if self.nli is None else {}
        chunks.update({hits[n - 1].chunk["id"]: hits[n - 1].chunk for n in numbers})
        scores = dict(zip(chunks, self.scores([(sentence, c) for c in chunks.values()]), strict=True)) \
            if sentence else dict.fromkeys(chunks, 0.0)
        out = []
        for n in numbers:
            cid = hits[n - 1].chunk["id"]
            best_other = max((s for c, s in scores.items() if c != cid), default=None)
            ok = bool(sentence) and supported(scores[cid], best_other, self.threshold, self.slack)
            out.append(Verdict(n, cid, sentence, scores[cid], ok, best_other))
        return out

    def check(self, text: str, hits: Sequence[Any]) -> tuple[str, list[Verdict]]:
        """(text with unsupported citations marked `[n?]`, a verdict per citation) for text whose citations are
        already in range (`answer.check_citations`)."""
        verdicts: list[Verdict] = []

        def mark(m: re.Match[str]) -> str:
            numbers = [int(x) for x in m.group(1).split(",")]
            found = self.judge(sentence_before(m.string[:m.start()]), numbers, hits)
            verdicts.extend(found)
            return render_citation(numbers, {v.n for v in found if not v.supported})

        return _CITATION.sub(mark, text), verdicts


class NLIModel:
    """A sentence-transformers CrossEncoder trained for entailment (labels include "entailment")."""

    def __init__(self, ref: str, path: str, device: str = "auto") -> None:
        from onecard.core.device import select_device
        from onecard.core.errors import ModelNotFoundError
        from onecard.core.extras import require

        st = require("sentence_transformers", "rag", "sentence-transformers")
        self.name = ref
        self.model = st.CrossEncoder(path, device=select_device(device), local_files_only=True)
        labels = {str(v).lower(): int(k) for k, v in self.model.model.config.id2label.items()}
        if "entailment" not in labels:
            raise ModelNotFoundError(f"{ref} is not an entailment model: its labels are {sorted(labels)}",
                                     "pass an NLI cross-encoder, e.g. cross-encoder/nli-deberta-v3-small")
        self.entail = labels["entailment"]

    def entailment(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """P(premise entails hypothesis) per (premise, hypothesis) pair."""
        logits = np.asarray(self.model.predict(pairs, show_progress_bar=False), dtype=np.float64)
        logits = logits.reshape(len(pairs), -1)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (probs / probs.sum(axis=1, keepdims=True))[:, self.entail]


@lru_cache(maxsize=2)
def _nli(ref: str, device: str) -> NLIModel:
    from onecard.core.sources import resolve_model

    return NLIModel(ref, str(resolve_model(ref).path), device)


def load_checker(checker: str, embedder: Any, threshold: float | Literal["auto"] = "auto",
                 device: str = "auto") -> CitationChecker | None:
    """The checker `checker` names: "embedding" (with `embedder`), "none", or an NLI cross-encoder (a local folder
    or a cached hub id; a missing one is an error that says how to get it, never a download)."""
    if checker == "none":
        return None
    if checker == "embedding":
        return CitationChecker(embedder, threshold)
    return CitationChecker(embedder, threshold, _nli(checker, device))


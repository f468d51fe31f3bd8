"""Reranking the top hybrid hits: a cross-encoder from the hub cache (`models.Reranker`), or a chat model through
`onecard.llm`, which works offline with any model the user has (a GGUF file, the shipped SmolLM2, Ollama, a server).

The chat model reranks pointwise (one call per passage: a grade 0-3 of how well it answers the query; ties keep the
retriever's order) or listwise (one call: the passages' numbers best first, RankGPT style: Sun et al., "Is ChatGPT
Good at Search?", EMNLP 2023). Replies are constrained to a JSON schema where the backend can, and read leniently
where it cannot; a reply that still cannot be read leaves the retriever's order as it was.

`--reranker` takes: auto | none | a cross-encoder (folder or cached hub id) | llm[:MODEL] | llm-listwise[:MODEL].
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from onecard.core.errors import ModelNotFoundError
from onecard.rag import models

if TYPE_CHECKING:
    from onecard.llm import Backend, LLMConfig

__all__ = ["PassageScorer", "LLMReranker", "RerankMethod", "load_reranker", "parse_grade", "parse_ranking",
           "retriever_order", "LLM_PREFIXES"]

log = logging.getLogger("onecard.rag")

RerankMethod = Literal["pointwise", "listwise"]
LLM_PREFIXES: dict[str, RerankMethod] = {"llm": "pointwise", "llm-listwise": "listwise"}
GRADES = (0, 1, 2, 3)
LISTWISE_WORDS = 80  # each passage cut to this many words, so that 20 of them fit a 4k context with room to answer
_GRADE_SCHEMA = {"type": "object", "properties": {"grade": {"enum": list(GRADES)}}, "required": ["grade"]}
_SYSTEM = "You judge how well search results answer a question."


class PassageScorer(Protocol):
    """What `Searcher` needs of a reranker: a name, and one score per passage (higher is better)."""

    name: str

    def score(self, query: str, passages: list[str]) -> np.ndarray: ...


def retriever_order(n: int) -> np.ndarray:
    """Scores that keep n passages in the order they came: n, n-1, ..., 1."""
    return np.arange(n, 0, -1, dtype=np.float32)


def parse_grade(text: str) -> int | None:
    """The first grade 0-3 in a reply (`{"grade": 2}` or `2 - partly`), None when there is none."""
    match = re.search(r"(?<!\d)[0-3](?!\d)", text)
    return int(match.group()) if match else None


def parse_ranking(text: str, n: int) -> list[int] | None:
    """A permutation of range(n) from a reply naming passages 1..n best first (`{"ranking": [3, 1]}`, `[3] > [1]`):
    repeats and numbers out of range are dropped, passages the reply left out follow in the retriever's order.
    None when the reply names no passage."""
    named = [int(x) - 1 for x in re.findall(r"\d+", text) if 1 <= int(x) <= n]
    if not named:
        return None
    first = list(dict.fromkeys(named))
    return first + [i for i in range(n) if i not in set(first)]


class LLMReranker:
    """A chat model as a reranker: `score` gives higher numbers to the passages it judges more relevant."""

    def __init__(self, backend: Backend, method: RerankMethod = "pointwise") -> None:
        self.backend = backend
        self.method = method
        self.name = f"{'llm' if method == 'pointwise' else 'llm-listwise'}:{backend.model}"
        self.fallbacks = 0  # queries whose reply could not be read, so the retriever's order stood

    def score(self, query: str, passages: list[str]) -> np.ndarray:
        if not passages:
            return np.zeros(0, dtype=np.float32)
        if self.method == "listwise":
            order = parse_ranking(self._ask(_listwise_prompt(query, passages), _ranking_schema(len(passages)),
                                            8 * len(passages) + 16), len(passages))
            if order is not None:
                scores = np.zeros(len(passages), dtype=np.float32)
                scores[order] = retriever_order(len(passages))
                return scores
        else:
            grades = [parse_grade(self._ask(_pointwise_prompt(query, p), _GRADE_SCHEMA, 16)) for p in passages]
            if all(g is not None for g in grades):
                return np.asarray(grades, dtype=np.float32)  # ties: Searcher's stable sort keeps retriever order
        self.fallbacks += 1
        log.warning("the LLM reranker's reply could not be read; kept the retriever's order for %r", query[:80])
        return retriever_order(len(passages))

    def close(self) -> None:
        self.backend.close()

    def _ask(self, prompt: str, schema: dict[str, Any], max_tokens: int) -> str:
        """The reply's text; "" when it did not validate, was cut off, or the prompt did not fit the context."""
        from onecard.llm import ContextOverflowError, InvalidOutputError

        constrained = schema if self.backend.capabilities.json_schema else None
        messages = [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": prompt}]
        try:
            return self.backend.chat(messages, json_schema=constrained, temperature=0.0, max_tokens=max_tokens).text
        except (InvalidOutputError, ContextOverflowError) as e:
            log.warning("LLM reranker: %s", e.what)
            return ""


def _pointwise_prompt(query: str, passage: str) -> str:
    return (f"Question: {query}\n\nPassage: {passage}\n\nHow well does the passage answer the question? "
            "Grade 0 (unrelated) to 3 (answers it).")


def _listwise_prompt(query: str, passages: list[str]) -> str:
    listed = "\n".join(f"[{i}] {' '.join(p.split()[:LISTWISE_WORDS])}" for i, p in enumerate(passages, start=1))
    return (f"Question: {query}\n\nPassages:\n{listed}\n\nRank the {len(passages)} passages by how well they answer "
            "the question, best first, by their numbers.")


def _ranking_schema(n: int) -> dict[str, Any]:
    ranking = {"type": "array", "items": {"enum": list(range(1, n + 1))}, "minItems": 1, "maxItems": n}
    return {"type": "object", "properties": {"ranking": ranking}, "required": ["ranking"]}


def load_reranker(ref: str, device: str = "auto", llm: LLMConfig | None = None) -> tuple[PassageScorer | None,
                                                                                         str | None]:
    """The reranker `ref` names, and a note when there is none (see `models.load_reranker` for the cross-encoders).

    `llm` and `llm-listwise` rerank with the chat model of `llm` (an ask's own model; None: the shipped default);
    `llm:MODEL` and `llm-listwise:MODEL` with MODEL (a .gguf file or shipped name on llama.cpp, or what `llm`'s
    backend takes). "auto" never picks a chat model: the small shipped one does not help (benchmarks/RESULTS.md).
    """
    prefix, _, model = ref.partition(":")
    if prefix not in LLM_PREFIXES:
        return models.load_reranker(ref, device)
    from onecard.llm import LLMConfig, load

    fields = set(LLMConfig.model_fields)
    config = LLMConfig() if llm is None else LLMConfig.model_validate(llm.model_dump(include=fields))
    if model:
        config = config.model_copy(update={"model": model})
    try:
        backend = load(config)
    except ModelNotFoundError as e:
        raise ModelNotFoundError(f"the reranker --reranker {ref} needs a chat model, and {e.what}",
                                 f"{e.fix + '; ' if e.fix else ''}`onecard llm list` shows the models on this "
                                 "machine, `onecard llm pull ORG/NAME/FILE.gguf` fetches one (online), and "
                                 "`--reranker llm` uses the shipped smollm2-135m-instruct") from None
    return LLMReranker(backend, LLM_PREFIXES[prefix]), None

"""The LLM reranker: the shipped model moves a relevant passage up, an unreadable reply keeps the retriever's order,
a missing model is an error that says how to get one, and Searcher reranks with it like with a cross-encoder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from onecard.core.errors import ModelNotFoundError
from onecard.llm import Backend, Capabilities, InvalidOutputError, Reply
from onecard.llm.base import Request
from onecard.rag.rerank import LLMReranker, load_reranker, parse_grade, parse_ranking, retriever_order

QUERY = "In what country is Normandy located?"
PASSAGES = [  # the relevant one last, where the retriever put it
    "Computational complexity theory is a branch of the theory of computation in theoretical computer science.",
    "The Amazon rainforest is a moist broadleaf forest that covers most of the Amazon basin of South America.",
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in France.",
]


class Scripted(Backend):
    """A backend that answers from a script, one reply per call, or raises what the script holds."""

    name = "scripted"
    capabilities = Capabilities(json_schema=True)

    def __init__(self, replies: list[str | Exception]) -> None:
        super().__init__("scripted")
        self.replies = list(replies)
        self.requests: list[Request] = []

    def _generate(self, request: Request) -> Iterator[str]:  # type: ignore[override]
        self.requests.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        yield reply
        return Reply(reply)


@pytest.fixture(scope="module")
def shipped() -> Iterator[Backend]:
    pytest.importorskip("llama_cpp")
    from onecard.llm import LLMConfig, load

    try:
        backend = load(LLMConfig(ctx=2048))
    except ModelNotFoundError as e:
        pytest.skip(str(e))
    yield backend
    backend.close()


def test_the_shipped_model_moves_the_relevant_passage_up(shipped: Backend) -> None:
    # Measured: SmolLM2-135M grades the Normandy passage 3; the other two 0 and 0 with the llama.cpp built on the
    # earlier CI hosts, 0 and 3 with llama-cpp-python 0.3.36 built on an AMD EPYC without AVX-512 (2026-12-07: pip
    # compiles llama.cpp for the host's CPU, whose SIMD kernels round differently; the Amazon passage graded as
    # relevant, a tie, which keeps the retriever's order). So what is held is what a 135M grader does on every build
    # seen: the relevant passage gets the top grade, above the off-topic one, and leaves last place. Listwise it keeps
    # the Normandy passage last here (and left nDCG@10 unchanged in benchmarks/rag_rerank.py), so only pointwise is
    # held to this.
    reranker = LLMReranker(shipped, "pointwise")
    scores = reranker.score(QUERY, PASSAGES)
    assert scores[2] == scores.max() > scores[0] and reranker.fallbacks == 0
    order = sorted(range(len(PASSAGES)), key=lambda i: -scores[i])  # Searcher's stable sort: ties keep the order
    assert order.index(2) < 2  # was third


def test_replies_are_read_leniently() -> None:
    assert [parse_grade(t) for t in ('{"grade": 2}', "3 - it answers it", "grade: 12", "no idea")] == [2, 3, None,
                                                                                                          None]
    assert parse_ranking('{"ranking": [3, 3, 9, 1]}', 4) == [2, 0, 1, 3]  # repeats and 9 dropped, 2 and 4 appended
    assert parse_ranking("[2] > [1]", 3) == [1, 0, 2]
    assert parse_ranking("none of them", 3) is None


@pytest.mark.parametrize(("method", "replies"), [
    ("pointwise", ['{"grade": 0}', "I cannot tell", '{"grade": 3}']),
    ("pointwise", ['{"grade": 0}', InvalidOutputError("cut off"), '{"grade": 3}']),
    ("listwise", ["the third one is best"]),
    ("listwise", [InvalidOutputError("cut off")]),
])
def test_an_unreadable_reply_keeps_the_retriever_order(method: str, replies: list[str | Exception]) -> None:
    reranker = LLMReranker(Scripted(replies), method)  # type: ignore[arg-type]
    assert reranker.score(QUERY, PASSAGES).tolist() == retriever_order(3).tolist() == [3.0, 2.0, 1.0]
    assert reranker.fallbacks == 1


def test_readable_replies_reorder_and_ties_keep_the_retriever_order() -> None:
    backend = Scripted(['{"grade": 1}', '{"grade": 1}', '{"grade": 3}', '{"ranking": [3, 1, 2]}'])
    pointwise = LLMReranker(backend, "pointwise").score(QUERY, PASSAGES)
    assert np.argsort(-pointwise, kind="stable").tolist() == [2, 0, 1]
    listwise = LLMReranker(backend, "listwise").score(QUERY, PASSAGES)
    assert np.argsort(-listwise, kind="stable").tolist() == [2, 0, 1]
    assert [r.json_schema is not None for r in backend.requests] == [True] * 4  # constrained where it can be
    assert "[3] The Normans" in backend.requests[-1].messages[-1]["content"]


def test_a_missing_model_says_what_and_how_to_get_one(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelNotFoundError) as raised:
        load_reranker(f"llm:{missing}")
    message = str(raised.value)
    assert f"--reranker llm:{missing}" in message and "does not exist" in message
    assert "onecard llm pull" in message and "onecard llm list" in message


def test_cross_encoder_references_still_go_to_the_cross_encoder_loader(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert load_reranker("none") == (None, None)
    reranker, note = load_reranker("auto")  # never a chat model, however many are installed
    assert reranker is None and "cross-encoder" in (note or "")


def test_searcher_reranks_with_the_llm_like_with_a_cross_encoder(tmp_path: Path, embedder) -> None:
    pytest.importorskip("faiss")
    pytest.importorskip("bm25s")
    from onecard.rag.index import build_index, open_index
    from onecard.rag.search import Searcher

    docs = tmp_path / "docs"
    docs.mkdir()
    for n, text in enumerate(PASSAGES):
        (docs / f"{n}.txt").write_text(text + " Normandy country located.\n")
    build_index(tmp_path / "idx", [docs], embedder)
    index = open_index(tmp_path / "idx")
    plain = Searcher(index, embedder)
    hybrid = [h.row for h in plain.search(QUERY, 3, "hybrid")]
    normans = next(h.row for h in plain.search(QUERY, 3, "hybrid") if "Normans" in h.chunk["text"])
    grades = ['{"grade": 3}' if row == normans else '{"grade": 0}' for row in hybrid]
    searcher = Searcher(index, embedder, LLMReranker(Scripted(grades), "pointwise"), rerank_top=3)
    hits = searcher.search(QUERY, 3, "rerank")
    assert hits[0].row == normans and [h.row for h in hits[1:]] == [r for r in hybrid if r != normans]
    index.close()


def test_ask_answers_with_the_reranking_model_instead_of_loading_it_twice(monkeypatch) -> None:
    import onecard.llm
    from onecard.rag import run
    from onecard.rag.config import AskConfig

    loaded: list[str] = []
    monkeypatch.setattr(onecard.llm, "load", lambda config: loaded.append(config.model) or Scripted([]))
    reranker = LLMReranker(Scripted([]))
    searcher = type("S", (), {"reranker": reranker})()
    backend, own = run._answering_backend(AskConfig(question="q", reranker="llm"), searcher)
    assert backend is reranker.backend and not own and loaded == []  # one model in memory, closed by the reranker
    backend, own = run._answering_backend(AskConfig(question="q", reranker="llm:other.gguf"), searcher)
    assert own and len(loaded) == 1  # another model reranks: the answering one is loaded

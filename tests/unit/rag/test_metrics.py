"""Metrics on hand-computed examples (and against pytrec_eval, trec_eval's Python binding, when installed)."""

from __future__ import annotations

import math

import pytest

from onecard.core.answers import exact_match, rouge_l, token_f1
from onecard.rag.metrics import mrr_at, ndcg_at, recall_at, retrieval_metrics

RANKED = ["d3", "d1", "d5", "d2", "d4"]
RELEVANT = {"d1": 1, "d2": 2}


def test_ndcg_by_hand() -> None:
    # DCG = 1/log2(3) + 2/log2(5) = 0.63093 + 0.86135; ideal: 2/log2(2) + 1/log2(3) = 2 + 0.63093
    assert ndcg_at(RANKED, RELEVANT, 10) == pytest.approx((0.630930 + 0.861353) / 2.630930, abs=1e-6)
    assert ndcg_at(RANKED, RELEVANT, 10) == pytest.approx(0.567207, abs=1e-6)
    assert ndcg_at(["d2", "d1"], RELEVANT, 10) == pytest.approx(1.0)
    assert ndcg_at(["d9"], RELEVANT, 10) == 0.0


def test_recall_and_mrr_by_hand() -> None:
    assert recall_at(RANKED, RELEVANT, 2) == 0.5  # d1 of {d1, d2}
    assert recall_at(RANKED, RELEVANT, 5) == 1.0
    assert mrr_at(RANKED, RELEVANT, 10) == 0.5  # first relevant at rank 2
    assert mrr_at(RANKED, RELEVANT, 1) == 0.0


def test_means_over_judged_queries_only() -> None:
    runs = {"q1": RANKED, "q2": ["d7", "d8"], "q3": ["x"]}
    qrels = {"q1": RELEVANT, "q2": {"d8": 1}, "q3": {"x": 0}}  # q3 has no relevant document: not scored
    m = retrieval_metrics(runs, qrels)
    assert m["mrr@10"] == pytest.approx((0.5 + 0.5) / 2)
    assert m["ndcg@10"] == pytest.approx(round((0.567207 + 1 / math.log2(3)) / 2, 4))


def test_against_pytrec_eval() -> None:
    # pytrec-eval-terrier (in onecard[test]) ships wheels of pytrec_eval; pytrec_eval itself is a source package
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="pip install pytrec-eval-terrier (in onecard[test])")
    qrels = {"q1": RELEVANT, "q2": {"a": 1, "b": 3, "c": 1}}
    runs = {"q1": RANKED, "q2": ["x", "b", "y", "a", "z", "w", "v", "u", "t", "s", "c"]}
    as_run = {q: {d: float(len(r) - i) for i, d in enumerate(r)} for q, r in runs.items()}
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.5", "recall.10", "recip_rank"}).evaluate(as_run)
    for q in qrels:
        assert ndcg_at(runs[q], qrels[q], 10) == pytest.approx(ref[q]["ndcg_cut_10"], abs=1e-6)
        assert recall_at(runs[q], qrels[q], 5) == pytest.approx(ref[q]["recall_5"], abs=1e-6)
        assert recall_at(runs[q], qrels[q], 10) == pytest.approx(ref[q]["recall_10"], abs=1e-6)
        # trec_eval's recip_rank has no cut-off; both queries' first relevant document is at rank 2, inside 10
        assert mrr_at(runs[q], qrels[q], 10) == pytest.approx(ref[q]["recip_rank"], abs=1e-6)


def test_answer_metrics_by_hand() -> None:
    assert exact_match("The Eiffel Tower!", ["eiffel tower"]) == 1.0  # SQuAD normalisation
    # "eiffel tower in paris" vs "eiffel tower": precision 2/4, recall 2/2 -> F1 2/3; the LCS is 2 tokens too
    assert token_f1("The Eiffel Tower in Paris", ["Eiffel Tower"]) == pytest.approx(2 / 3)
    assert rouge_l("The Eiffel Tower in Paris", ["Eiffel Tower"]) == pytest.approx(2 / 3)
    # order matters to ROUGE-L, not to F1: LCS of "tower eiffel" and "eiffel tower" is 1 token
    assert token_f1("tower eiffel", ["eiffel tower"]) == 1.0
    assert rouge_l("tower eiffel", ["eiffel tower"]) == pytest.approx(0.5)
    assert token_f1("Paris", ["London", "paris"]) == 1.0  # the best gold answer counts

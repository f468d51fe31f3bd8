"""Retrieval and answer metrics, by their textbook definitions.

Retrieval follows trec_eval (what BEIR reports through pytrec_eval): nDCG@k with gain = graded relevance and
discount 1 / log2(rank + 1), ideal ordering from the judgements; recall@k = relevant in the top k / all relevant;
MRR@k = 1 / rank of the first relevant document in the top k (0 if none). Answers follow the SQuAD evaluation script:
normalise (lower case, no punctuation, no articles, single spaces), exact match and token F1 against the best
gold answer; ROUGE-L is the F-measure of the longest common subsequence of tokens (Lin, 2004; beta = 1).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

__all__ = ["ndcg_at", "recall_at", "mrr_at", "retrieval_metrics", "normalize_answer", "exact_match", "token_f1",
           "rouge_l", "answer_metrics", "RETRIEVAL_METRICS"]

RETRIEVAL_METRICS = ("ndcg@10", "recall@5", "recall@10", "mrr@10")


def ndcg_at(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    wanted = {d for d, g in relevant.items() if g > 0}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0


def mrr_at(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    for i, d in enumerate(ranked[:k]):
        if relevant.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def retrieval_metrics(runs: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Means over the judged queries of nDCG@10, recall@5, recall@10 and MRR@10; `runs`: query id -> ranked doc ids."""
    judged = [q for q in qrels if any(g > 0 for g in qrels[q].values())]
    if not judged:
        return {m: 0.0 for m in RETRIEVAL_METRICS}
    per = {
        "ndcg@10": [ndcg_at(runs.get(q, []), qrels[q], 10) for q in judged],
        "recall@5": [recall_at(runs.get(q, []), qrels[q], 5) for q in judged],
        "recall@10": [recall_at(runs.get(q, []), qrels[q], 10) for q in judged],
        "mrr@10": [mrr_at(runs.get(q, []), qrels[q], 10) for q in judged],
    }
    return {m: round(sum(v) / len(v), 4) for m, v in per.items()}


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, punctuation and the articles a/an/the removed, whitespace collapsed."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    return float(any(normalize_answer(prediction) == normalize_answer(g) for g in golds))


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    return max((_f1(normalize_answer(prediction).split(), normalize_answer(g).split()) for g in golds), default=0.0)


def rouge_l(prediction: str, golds: Sequence[str]) -> float:
    pred = normalize_answer(prediction).split()
    return max((_rouge_l(pred, normalize_answer(g).split()) for g in golds), default=0.0)


def answer_metrics(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Means of exact match, token F1 and ROUGE-L over questions that have gold answers."""
    pairs = [(p, g) for p, g in zip(predictions, golds, strict=True) if g]
    if not pairs:
        return {}
    n = len(pairs)
    return {"exact_match": round(sum(exact_match(p, g) for p, g in pairs) / n, 4),
            "f1": round(sum(token_f1(p, g) for p, g in pairs) / n, 4),
            "rouge_l": round(sum(rouge_l(p, g) for p, g in pairs) / n, 4)}


def _f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:
        return float(pred == gold)
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def _rouge_l(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:
        return 0.0
    prev = [0] * (len(gold) + 1)
    for a in pred:
        cur = [0]
        for j, b in enumerate(gold):
            cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(gold)
    return 2 * precision * recall / (precision + recall)

"""Retrieval metrics, by their textbook definitions (answer metrics are shared: `onecard.core.answers`).

They follow trec_eval (what BEIR reports through pytrec_eval): nDCG@k with gain = graded relevance and discount
1 / log2(rank + 1), ideal ordering from the judgements; recall@k = relevant in the top k / all relevant; MRR@k =
1 / rank of the first relevant document in the top k (0 if none).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["ndcg_at", "recall_at", "mrr_at", "retrieval_metrics", "RETRIEVAL_METRICS"]

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

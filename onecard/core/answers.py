"""Answer metrics: exact match, token F1 and ROUGE-L of a predicted answer against its reference answers.

One normalisation for all three, the one in SQuAD v2's official evaluation script (`normalize_answer`): lower case,
punctuation removed, the articles a/an/the removed, whitespace squeezed; tokens are the result split on whitespace.

- Exact match: the normalised strings are equal (SQuAD's `compute_exact`).
- Token F1: harmonic mean of the precision and recall of the shared tokens, counted with repeats (`compute_f1`).
- ROUGE-L: the F-measure of the longest common subsequence of tokens (Lin, 2004), with beta = 1: rouge-score's
  `rougeL` fmeasure, but on the normalised tokens (rouge-score keeps articles, and its tokenizer splits on any
  non-alphanumeric character where SQuAD's drops punctuation: "don't" is one token here, two there).
- Empty answers, one rule for all three (SQuAD's: "If either is no-answer, then F1 is 1 if they agree, 0
  otherwise"): when either side normalises to no tokens, the score is 1.0 if both do, else 0.0. So "the" against "a"
  scores 1.0 (both are empty after normalisation), and "" against "Paris" 0.0.
- Several references: the best score over them (SQuAD's `metric_max_over_ground_truths`). As in SQuAD v2's
  `get_raw_scores`, references that normalise to nothing are dropped, and when none is left (an unanswerable
  question) the empty answer is the only right one.

Only the standard library: `onecard.core` must import without torch or numpy.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

__all__ = ["normalize_answer", "answer_tokens", "exact_match", "token_f1", "rouge_l", "answer_metrics"]

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, punctuation and the articles a/an/the removed, whitespace squeezed."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    """The normalised answer's tokens (SQuAD's `get_tokens`)."""
    return normalize_answer(text).split()


def exact_match(prediction: str, references: str | Sequence[str]) -> float:
    """1.0 when the prediction equals a reference after normalisation, else 0.0."""
    return _best(lambda p, r: float(p == r), prediction, references)


def token_f1(prediction: str, references: str | Sequence[str]) -> float:
    """F1 of the tokens shared with the best reference (bag of tokens: order does not count)."""
    return _best(_f1, prediction, references)


def rouge_l(prediction: str, references: str | Sequence[str]) -> float:
    """ROUGE-L F-measure (beta = 1) against the best reference: order counts, gaps do not."""
    return _best(_rouge_l, prediction, references)


def answer_metrics(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, float]:
    """Means of exact match, token F1 and ROUGE-L over the predictions that have references.

    A prediction whose reference list is empty is left out (an empty dict when none is left): a generated answer to
    an unanswerable question is never the empty string, so whether it declined is measured apart (an abstain rate).
    """
    pairs = [(p, r) for p, r in zip(predictions, references, strict=True) if isinstance(r, str) or r]
    if not pairs:
        return {}
    return {name: sum(metric(p, r) for p, r in pairs) / len(pairs)
            for name, metric in (("exact_match", exact_match), ("token_f1", token_f1), ("rouge_l", rouge_l))}


def _best(score: Callable[[list[str], list[str]], float], prediction: str, references: str | Sequence[str]) -> float:
    refs = [references] if isinstance(references, str) else references
    gold = [tokens for tokens in map(answer_tokens, refs) if tokens] or [[]]
    pred = answer_tokens(prediction)
    if not pred:
        return float(gold == [[]])
    return max(score(pred, ref) if ref else 0.0 for ref in gold)


def _f1(pred: list[str], ref: list[str]) -> float:
    same = sum((Counter(pred) & Counter(ref)).values())
    return _f_measure(same, len(pred), len(ref))


def _rouge_l(pred: list[str], ref: list[str]) -> float:
    # the longest common subsequence, one row of the (len(pred) + 1, len(ref) + 1) table at a time
    row = [0] * (len(ref) + 1)
    for p in pred:
        diagonal = 0
        for j, r in enumerate(ref, 1):
            diagonal, row[j] = row[j], diagonal + 1 if p == r else max(row[j], row[j - 1])
    return _f_measure(row[-1], len(pred), len(ref))


def _f_measure(overlap: int, n_pred: int, n_ref: int) -> float:
    if overlap == 0:
        return 0.0
    precision, recall = overlap / n_pred, overlap / n_ref
    return 2 * precision * recall / (precision + recall)

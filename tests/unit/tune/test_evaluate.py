"""Generation metrics: SQuAD's normalization, exact match, token F1, ROUGE-L on worked examples."""

from __future__ import annotations

import pytest

from onecard.core.answers import answer_tokens, exact_match, rouge_l, token_f1


def test_normalization_drops_case_punctuation_and_articles() -> None:
    assert answer_tokens("The Cat, sat!") == ["cat", "sat"]
    assert exact_match("The cat.", "cat") == 1.0 and exact_match("cats", "cat") == 0.0


def test_token_f1_counts_shared_tokens() -> None:
    # 2 shared of 3 predicted and 4 reference tokens: P 2/3, R 1/2 -> F1 4/7
    assert token_f1("red green blue", "red green yellow black") == pytest.approx(4 / 7)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0


def test_rouge_l_is_the_f_measure_of_the_longest_common_subsequence() -> None:
    # [cat sat on mat] vs [cat lay on mat]: LCS 3 of 4 each way -> 0.75
    assert rouge_l("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(0.75)
    # order matters: LCS of [a b c d] and [d c b a] is 1 -> P = R = 1/4
    assert rouge_l("w x y z", "z y x w") == pytest.approx(0.25)
    assert rouge_l("same words", "same words") == 1.0

from __future__ import annotations

import pytest

pytest.importorskip("jiwer")
pytest.importorskip("transformers")

from onecard.asr.metrics import error_rates, normalizer, word_changes  # noqa: E402


def test_english_normaliser_ignores_case_punctuation_and_spelled_forms() -> None:
    english = normalizer("english")
    ref = "Mr. Quilter is the apostle of the middle classes."
    assert error_rates([ref], ["mister quilter is the apostle of the middle classes"], english)["wer"] == 0.0
    assert error_rates(["I won't pay 10 dollars"], ["I will not pay ten dollars."], english)["wer"] == 0.0


def test_corpus_wer_sums_errors_over_reference_words() -> None:
    basic = normalizer("basic")
    scores = error_rates(["a b c d", "e f"], ["a b x d", "e"], basic)
    assert scores["wer"] == pytest.approx(2 / 6)  # one substitution, one deletion, six reference words
    assert (scores["substitutions"], scores["deletions"], scores["insertions"]) == (1, 1, 0)
    assert 0 < scores["cer"] < 1
    assert error_rates([""], ["anything"], basic) == {}


def test_word_changes_counts_words_not_punctuation() -> None:
    basic = normalizer("basic")
    assert word_changes("hello world how are you", "Hello, world! How are you?", basic) == 0.0
    assert word_changes("hello world how are you", "Hello, world! Who are you?", basic) == pytest.approx(0.2)
    assert word_changes("", "", basic) == 0.0


def test_glossary_words_an_edit_puts_in_are_free() -> None:
    basic = normalizer("basic")
    original = "we deployed it on cube and eighties yesterday"
    assert word_changes(original, "We deployed it on Kubernetes yesterday.", basic, ["Kubernetes"]) == \
        pytest.approx(2 / 8)  # the substitution is free, the two deleted words count
    assert word_changes(original, "We deployed it on Kubernetes yesterday.", basic) == pytest.approx(3 / 8)

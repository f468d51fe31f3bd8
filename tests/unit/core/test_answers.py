"""Answer metrics against their reference implementations: SQuAD v2's evaluation script and rouge-score.

Expected values marked SQuAD were computed with the logic of SQuAD v2.0's official `evaluate-v2.0.py`
(`normalize_answer`, `compute_exact`, `compute_f1`, and `get_raw_scores`' max over the gold answers that normalise to
something, [""] when none does). Those marked rouge-score were computed with rouge-score 0.1.2,
`RougeScorer(["rougeL"]).score(normalize_answer(reference), normalize_answer(prediction))["rougeL"].fmeasure`.
"""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from onecard.core.answers import answer_metrics, answer_tokens, exact_match, normalize_answer, rouge_l, token_f1


@pytest.mark.parametrize(("text", "expected"), [  # SQuAD
    ("The Cat, sat!", "cat sat"),
    ("Levi's  Stadium -- the   end.", "levis stadium end"),
    ("an apple a day", "apple day"),
    ("1,000 km/h", "1000 kmh"),
    ("Theatre, Anthem", "theatre anthem"),  # articles are whole words only
])
def test_normalisation_is_squads(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected
    assert answer_tokens(text) == expected.split()


@pytest.mark.parametrize(("prediction", "references", "em", "f1"), [  # SQuAD
    ("The Denver Broncos!", ["Denver Broncos"], 1.0, 1.0),
    ("Broncos won", ["Denver Broncos", "Broncos"], 0.0, 2 / 3),
    ("Levi's Stadium in Santa Clara", ["Santa Clara, California"], 0.0, 0.5),
    ("new york", ["New York City"], 0.0, 0.8),
    ("dog cat cat", ["dog dog cat"], 0.0, 2 / 3),  # tokens count with their repeats
    ("1000 kmh", ["1,000 km/h"], 1.0, 1.0),
    ("a", ["the the the"], 1.0, 1.0),  # both empty after normalisation
    ("", [""], 1.0, 1.0),
    ("An answer", [], 0.0, 0.0),  # no gold answer: only the empty answer is right
    ("", [], 1.0, 1.0),
    ("", ["a", "Paris"], 0.0, 0.0),  # a gold answer that normalises to nothing is dropped when there are others
    ("the", ["Paris"], 0.0, 0.0),
])
def test_exact_match_and_f1_equal_squads(prediction: str, references: list[str], em: float, f1: float) -> None:
    assert exact_match(prediction, references) == em
    assert token_f1(prediction, references) == pytest.approx(f1)


@pytest.mark.parametrize(("prediction", "reference", "expected"), [  # rouge-score
    ("the cat sat on the mat", "the cat lay on the mat", 0.75),
    ("w x y z", "z y x w", 0.25),
    ("The Eiffel Tower in Paris", "Eiffel Tower", 2 / 3),
    ("police killed the gunman", "the gunman was shot down by police", 2 / 9),  # Lin (2004)'s example
    ("one two three four five", "one three five", 0.75),
    ("It was built in 1889 for the World's Fair.", "The tower was completed in 1889 for the Exposition Universelle.",
     0.5),
    ("red green blue", "red green yellow black", 4 / 7),
])
def test_rouge_l_equals_rouge_score(prediction: str, reference: str, expected: float) -> None:
    assert rouge_l(prediction, reference) == pytest.approx(expected)
    assert rouge_l(prediction, [reference]) == pytest.approx(expected)


def test_rouge_l_against_rouge_score_on_random_answers() -> None:
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer", reason="pip install rouge-score")
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rng = random.Random(0)
    words = ["red", "green", "blue", "cat", "dog", "1889", "paris", "tower"]
    for _ in range(200):
        prediction = " ".join(rng.choices(words, k=rng.randint(1, 12)))
        reference = " ".join(rng.choices(words, k=rng.randint(1, 12)))
        expected = scorer.score(normalize_answer(reference), normalize_answer(prediction))["rougeL"].fmeasure
        assert rouge_l(prediction, reference) == pytest.approx(expected, abs=1e-12), (prediction, reference)


@pytest.mark.parametrize(("prediction", "reference", "expected"), [
    ("the", "a", 1.0),  # both normalise to nothing: they agree
    ("", "", 1.0),
    ("", "Paris", 0.0),
    ("Paris", "an", 0.0),
])
def test_one_rule_for_empty_answers_in_all_three_metrics(prediction: str, reference: str, expected: float) -> None:
    # rouge-score alone would say 0.0 for two empty answers; SQuAD's rule makes them agree
    assert exact_match(prediction, reference) == expected
    assert token_f1(prediction, reference) == expected
    assert rouge_l(prediction, reference) == expected


def test_several_references_take_the_best() -> None:
    assert exact_match("Paris", ["London", "paris."]) == 1.0
    assert token_f1("Eiffel Tower", ["the tower", "Eiffel Tower, Paris"]) == pytest.approx(0.8)  # 2/3 and 0.8
    # ROUGE-L: [tower eiffel] vs [eiffel tower] has an LCS of 1 (0.5); vs [tower] P 1/2, R 1 (2/3)
    assert rouge_l("tower eiffel", ["eiffel tower", "tower"]) == pytest.approx(2 / 3)


def test_a_single_reference_is_not_read_as_its_characters() -> None:
    assert exact_match("p", "Paris") == 0.0 and token_f1("p", "Paris") == 0.0


def test_answer_metrics_are_means_over_predictions_with_references() -> None:
    m = answer_metrics(["The Denver Broncos", "Broncos won", "I don't know"],
                       [["Denver Broncos"], ["Denver Broncos", "Broncos"], []])
    assert set(m) == {"exact_match", "token_f1", "rouge_l"}
    assert m["exact_match"] == pytest.approx(0.5)  # the unanswerable third is left out
    assert m["token_f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["rouge_l"] == pytest.approx((1 + 2 / 3) / 2)
    assert answer_metrics(["x"], [[]]) == {}
    assert answer_metrics(["red green blue", ""], ["red green yellow black", "the"]) == \
        pytest.approx({"exact_match": 0.5, "token_f1": (4 / 7 + 1) / 2, "rouge_l": (4 / 7 + 1) / 2})


def test_importing_answers_needs_only_the_standard_library() -> None:
    code = ("import sys; import onecard.core.answers; "
            "assert not {'torch', 'numpy'} & set(sys.modules), sorted({'torch', 'numpy'} & set(sys.modules))")
    subprocess.run([sys.executable, "-c", code], check=True)

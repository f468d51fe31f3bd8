"""Formatting: the chat template renders the rows, and the labels mask everything but the assistant's turns."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("transformers")

from onecard.tune.formatting import (  # noqa: E402
    IGNORE_INDEX,
    PLAIN_TEMPLATE,
    encode_chat,
    ensure_template,
    fit_rows,
    length_stats,
    prompt_ids,
)
from onecard.tune.model import byte_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return byte_tokenizer()


def _answer(tokenizer: Any, ids: list[int], labels: list[int]) -> str:
    return str(tokenizer.decode([i for i, lab in zip(ids, labels, strict=True) if lab != IGNORE_INDEX]))


def test_the_prompt_is_masked_and_the_answer_with_its_end_of_turn_is_learned(tokenizer: Any) -> None:
    messages = [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris"}]
    ids, labels = encode_chat(tokenizer, messages)
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(messages, tokenize=False)
    assert _answer(tokenizer, ids, labels) == "Paris<|im_end|>\n"
    prompt = prompt_ids(tokenizer, messages)
    assert ids[: len(prompt)] == prompt  # inference starts from exactly the training prompt
    assert labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert labels[len(prompt):] == ids[len(prompt):]


def test_every_assistant_turn_is_learned_and_no_user_turn(tokenizer: Any) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"},
                {"role": "assistant", "content": "6"}]
    ids, labels = encode_chat(tokenizer, messages)
    assert _answer(tokenizer, ids, labels) == "4<|im_end|>\n6<|im_end|>\n"
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(messages, tokenize=False)


def test_a_model_without_a_template_gets_the_plain_one(tokenizer: Any) -> None:
    plain = byte_tokenizer()
    plain.chat_template = None
    ensure_template(plain)
    assert plain.chat_template == PLAIN_TEMPLATE
    ids, labels = encode_chat(plain, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    assert tokenizer.decode(ids).startswith("### User:\nhi") and _answer(plain, ids, labels) == "yo<|im_end|>\n\n"


def test_long_rows_are_cut_and_counted_and_rows_without_answer_left_out() -> None:
    rows = [(1, [1] * 10, [IGNORE_INDEX] * 4 + [1] * 6), (2, [1] * 10, [IGNORE_INDEX] * 9 + [1]),
            (3, [1] * 5, [IGNORE_INDEX] * 2 + [1] * 3)]
    fitted = fit_rows(rows, max_length=8)
    assert fitted.truncated == [1, 2] and fitted.dropped == [2] and len(fitted.rows) == 2
    assert fitted.rows[0]["input_ids"] == [1] * 8 and fitted.rows[0]["labels"] == [IGNORE_INDEX] * 4 + [1] * 4


def test_length_stats() -> None:
    stats = length_stats(list(range(1, 101)), max_length=90)
    assert (stats["min"], stats["median"], stats["p95"], stats["max"], stats["over_max"]) == (1, 51, 96, 100, 10)

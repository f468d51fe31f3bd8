"""Rows -> token ids and labels with the model's own chat template; the loss falls on the assistant's turns only.

The same template renders the prompt at inference (`prompt_ids`), so training and generation see the same format.
A model without a chat template gets `PLAIN_TEMPLATE`, saved with the adapter so that every later use applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from onecard.core.errors import DataError
from onecard.core.peft_run import length_stats

__all__ = ["IGNORE_INDEX", "PLAIN_TEMPLATE", "ensure_template", "encode_chat", "prompt_ids", "encode_rows",
           "fit_rows", "Fitted", "length_stats"]

IGNORE_INDEX = -100  # labels with this value add nothing to the loss (torch's cross_entropy ignore_index)

PLAIN_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] + '\n\n' }}"
    "{% elif m['role'] == 'user' %}{{ '### User:\n' + m['content'] + '\n\n' }}"
    "{% else %}{{ '### Assistant:\n' + m['content'] + eos_token + '\n\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '### Assistant:\n' }}{% endif %}"
)


def ensure_template(tokenizer: Any) -> None:
    """Give a tokenizer without a chat template (a base model's) the plain one."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = PLAIN_TEMPLATE


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    if not messages:
        return ""
    text: str = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return text


def _ids(tokenizer: Any, text: str) -> list[int]:
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]  # the template writes the specials
    return ids


def encode_chat(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of a conversation: labels are IGNORE_INDEX except on the assistant's turns.

    Each assistant turn is what the template adds between the conversation up to it (with the generation prompt)
    and the conversation through it; its end-of-turn token is included, so the model learns to stop.
    """
    input_ids: list[int] = []
    labels: list[int] = []
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], generation_prompt=True)
        full = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise DataError("the model's chat template renders a conversation differently as it grows, so the "
                            "assistant's tokens cannot be told apart",
                            "use a model whose template renders earlier turns the same way (most do)")
        context, answer = _ids(tokenizer, prompt[len(done):]), _ids(tokenizer, full[len(prompt):])
        input_ids += context + answer
        labels += [IGNORE_INDEX] * len(context) + answer
        done = full
    return input_ids, labels


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The ids a generation starts from: the conversation before its last (assistant) turn, and the generation
    prompt."""
    return _ids(tokenizer, _render(tokenizer, messages[:-1], generation_prompt=True))


@dataclass
class Fitted:
    """Token rows ready for the trainer, and what fitting them into `max_length` did."""

    rows: list[dict[str, list[int]]]
    truncated: list[int]  # source lines of the rows cut to max_length
    dropped: list[int]  # source lines left with no response token after the cut: not trained on


def encode_rows(tokenizer: Any,
                conversations: list[tuple[int, list[dict[str, str]]]]) -> list[tuple[int, list[int], list[int]]]:
    """(line, input_ids, labels) of each (line, messages) row, at full length."""
    return [(line, *encode_chat(tokenizer, messages)) for line, messages in conversations]


def fit_rows(encoded: list[tuple[int, list[int], list[int]]], max_length: int) -> Fitted:
    """Rows longer than `max_length` keep their start (the prompt and the start of the answer), and are counted."""
    out = Fitted([], [], [])
    for line, ids, labels in encoded:
        if len(ids) > max_length:
            ids, labels = ids[:max_length], labels[:max_length]
            out.truncated.append(line)
        if all(label == IGNORE_INDEX for label in labels):
            out.dropped.append(line)
            continue
        out.rows.append({"input_ids": ids, "labels": labels})
    return out

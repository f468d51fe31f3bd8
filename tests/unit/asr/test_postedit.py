from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

pytest.importorskip("jiwer")

from onecard.asr.formats import Segment  # noqa: E402
from onecard.asr.metrics import normalizer  # noqa: E402
from onecard.asr.postedit import post_edit, prompt  # noqa: E402


@dataclass
class _Reply:
    text: str


class FakeLLM:
    """Answers each segment from a table: the guard is under test, not a model."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.asked: list[list[dict[str, Any]]] = []

    def chat(self, messages: list[dict[str, Any]], **_: Any) -> _Reply:
        self.asked.append(messages)
        text = messages[-1]["content"].split("Transcript: ", 1)[1].split("\nCorrected:")[0]
        return _Reply(self.answers[text])


def test_an_edit_that_rewrites_too_much_is_rejected_and_the_original_kept() -> None:
    segments = [Segment(0, 1, " so my fellow americans ask not"), Segment(1, 2, " what your country can do for you"),
                Segment(2, 3, " ask what you can do"), Segment(3, 4, "  ")]
    llm = FakeLLM({
        "so my fellow americans ask not": "So, my fellow Americans, ask not",  # punctuation, casing: 0 words changed
        "what your country can do for you": "Your nation will surely help you out",  # a rewrite
        "ask what you can do": "ask what you can do",
    })
    edited, counts = post_edit(segments, llm, ["Americans"], normalizer("english"), max_share=0.2)
    assert counts == {"accepted": 1, "rejected": 1, "unchanged": 1}
    assert [s.text for s in edited] == [" So, my fellow Americans, ask not", " what your country can do for you",
                                        " ask what you can do", "  "]
    assert [s.edit for s in edited] == ["accepted", "rejected", "unchanged", None]
    assert "Glossary: Americans" in llm.asked[0][-1]["content"]


def test_the_share_allowed_is_the_bound() -> None:
    segment = [Segment(0, 1, " one two three four five")]
    llm = FakeLLM({"one two three four five": "One, two, three, four, six."})  # 1 of 5 words changed
    assert post_edit(segment, llm, [], normalizer("basic"), 0.2)[1]["accepted"] == 1
    assert post_edit(segment, llm, [], normalizer("basic"), 0.1)[1]["rejected"] == 1


def test_prompt_names_the_glossary_only_when_given() -> None:
    assert "Glossary" not in prompt("hello", [])[-1]["content"]
    assert prompt(" hello ", ["Kubernetes", "Anna"])[-1]["content"] == (
        "Glossary: Kubernetes, Anna\nTranscript: hello\nCorrected:")

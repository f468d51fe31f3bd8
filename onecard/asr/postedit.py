"""The LLM post-editor: punctuation, casing and glossary names, segment by segment, checked not to rewrite.

Each segment's text goes to the LLM alone (a 135M model keeps to the task on one short segment; whole transcripts
it paraphrases). The edit is then compared with the original after Whisper's normalisation, which drops punctuation
and casing: what is left is what the edit changed in the words. An edit that changes more than `max_share` of them
is rejected and the original kept, so the post-editor cannot make the transcript's WER much worse than `max_share`
per segment, and a bad model cannot rewrite it. Glossary words the edit puts in are not counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from onecard.asr.formats import Segment
from onecard.asr.metrics import Normalize, word_changes

__all__ = ["post_edit", "prompt", "SYSTEM"]

SYSTEM = ("You correct speech-recognition transcripts. Restore punctuation and capital letters, and spell the names "
          "and terms of the glossary as it does. Never add, remove, reorder or reword anything else. Reply with the "
          "corrected text only.")


def prompt(text: str, glossary: list[str]) -> list[dict[str, Any]]:
    """The chat messages that ask for one segment's edit."""
    names = f"Glossary: {', '.join(glossary)}\n" if glossary else ""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{names}Transcript: {text.strip()}\nCorrected:"}]


def post_edit(segments: list[Segment], llm: Any, glossary: list[str], normalize: Normalize,
              max_share: float) -> tuple[list[Segment], dict[str, int]]:
    """Edit each segment through `llm` (an `onecard.llm` Backend); returns the segments and the counts of accepted,
    rejected (too many words changed) and unchanged edits.
    """
    counts: Counter[str] = Counter()
    edited = []
    for segment in segments:
        original = segment.text.strip()
        if not original:
            edited.append(segment)
            continue
        budget = 2 * len(original.split()) + 32  # tokens: the text again, with room for punctuation
        reply = llm.chat(prompt(original, glossary), temperature=0.0, max_tokens=budget)
        text = _clean(reply.text)
        if text == original or not text:
            verdict = "unchanged"
        elif word_changes(original, text, normalize, glossary) > max_share:
            verdict = "rejected"
        else:
            verdict = "accepted"
        counts[verdict] += 1
        edited.append(replace(segment, text=" " + text if verdict == "accepted" else segment.text, edit=verdict))
    return edited, {k: counts[k] for k in ("accepted", "rejected", "unchanged")}


def _clean(reply: str) -> str:
    # small models echo the prompt's label or quote the answer; other chatter is left for the guard to count
    text = reply.strip().split("\n")[0].strip()
    text = text.removeprefix("Corrected:").strip()
    return text[1:-1].strip() if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'" else text

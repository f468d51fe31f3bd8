"""Answers with checked citations: the prompt numbers the sources, the answer cites them as [n], and every [n] is
checked against the chunks that were retrieved; one that names no source is dropped (and counted), the others are
rendered as `path:line`. With no source similar enough to the question, the answer is "I don't know" and the LLM
is not asked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from onecard.rag.search import Hit

__all__ = ["Answer", "build_messages", "check_citations", "CitationFilter", "answer", "IDK", "SYSTEM"]

IDK = "I don't know: none of the indexed sources is about this."
SYSTEM = ("You answer questions using only the numbered sources given. Cite the sources you use with their numbers in "
          "square brackets, like [1] or [2]. If the sources do not contain the answer, say \"I don't know\". "
          "Be brief.")
_CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


@dataclass
class Answer:
    """An answer: its text (invalid citations removed), the sources cited, and what was dropped."""

    question: str
    text: str
    sources: list[Hit]
    cited: list[int] = field(default_factory=list)  # source numbers, 1-based, in order of first citation
    invalid_citations: int = 0
    abstained: bool = False
    reply: dict[str, Any] | None = None  # the LLM's token counts and timings
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    def citations(self) -> list[dict[str, Any]]:
        """Each cited source: its number, chunk id and `path:line`."""
        return [{"n": n, "id": self.sources[n - 1].chunk["id"], "location": self.sources[n - 1].location}
                for n in self.cited]

    def to_json(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.text, "abstained": self.abstained,
                "citations": self.citations(), "invalid_citations": self.invalid_citations,
                "sources": [{"n": n, **h.to_json()} for n, h in enumerate(self.sources, start=1)],
                "reply": self.reply, "tool_calls": self.tool_calls}


def format_sources(hits: list[Hit], start: int = 1) -> str:
    """The numbered sources as the prompt shows them: `[n] path:lines (heading)` then the text."""
    blocks = []
    for n, hit in enumerate(hits, start=start):
        context = " > ".join(list(hit.chunk["heading"]) + ([hit.chunk["symbol"]] if hit.chunk["symbol"] else []))
        blocks.append(f"[{n}] {hit.location}{f' ({context})' if context else ''}\n{hit.chunk['text'].strip()}")
    return "\n\n".join(blocks)


def build_messages(question: str, hits: list[Hit], history: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """System rules, earlier turns (chat), then the numbered sources and the question."""
    user = f"Sources:\n\n{format_sources(hits)}\n\nQuestion: {question}"
    return [{"role": "system", "content": SYSTEM}, *(history or []), {"role": "user", "content": user}]


def check_citations(text: str, n_sources: int) -> tuple[str, list[int], int]:
    """(text with invalid citations removed, valid source numbers in order of first use, invalid count).

    `[2]` and `[1, 3]` are citations; a number outside 1..n_sources names nothing that was retrieved.
    """
    cited: list[int] = []
    invalid = 0

    def keep(m: re.Match[str]) -> str:
        nonlocal invalid
        numbers = [int(x) for x in m.group(1).split(",")]
        good = [n for n in numbers if 1 <= n <= n_sources]
        invalid += len(numbers) - len(good)
        for n in good:
            if n not in cited:
                cited.append(n)
        return f"[{', '.join(map(str, good))}]" if good else ""

    cleaned = _CITATION.sub(keep, text)
    cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", cleaned))
    return cleaned.strip(), cited, invalid


class CitationFilter:
    """Streams text through, holding back a possible `[...]` until it closes, so invalid citations never show."""

    def __init__(self, n_sources: int) -> None:
        self.n_sources = n_sources
        self.held = ""
        self.cited: list[int] = []
        self.invalid = 0

    def feed(self, chunk: str) -> str:
        out = []
        for ch in chunk:
            if self.held:
                self.held += ch
                if ch == "]" or not re.fullmatch(r"\[[\d,\s]*\]?", self.held) or len(self.held) > 24:
                    out.append(self._release())
            elif ch == "[":
                self.held = ch
            else:
                out.append(ch)
        return "".join(out)

    def flush(self) -> str:
        return self._release() if self.held else ""

    def _release(self) -> str:
        text, self.held = self.held, ""
        if not _CITATION.fullmatch(text):
            return text
        cleaned, cited, invalid = check_citations(text, self.n_sources)
        self.invalid += invalid
        self.cited += [n for n in cited if n not in self.cited]
        return cleaned


def answer(backend: Any, question: str, hits: list[Hit], *, min_score: float,
           on_text: Callable[[str], None] | None = None, history: list[dict[str, Any]] | None = None,
           temperature: float = 0.0, max_tokens: int = 384) -> Answer:
    """Answer `question` from `hits` through `backend` (an `onecard.llm` Backend), streaming to `on_text`."""
    if not hits or max(h.similarity for h in hits) < min_score:
        if on_text:
            on_text(IDK)
        return Answer(question, IDK, hits, abstained=True)
    messages = build_messages(question, hits, history)
    stream = backend.stream(messages, temperature=temperature, max_tokens=max_tokens)
    filt = CitationFilter(len(hits))
    parts = []
    for chunk in stream:
        shown = filt.feed(chunk)
        parts.append(shown)
        if on_text and shown:
            on_text(shown)
    tail = filt.flush()
    if on_text and tail:
        on_text(tail)
    text, cited, invalid = check_citations("".join(parts) + tail, len(hits))
    reply = stream.reply.to_json() if stream.reply is not None else None
    return Answer(question, text, hits, cited, filt.invalid + invalid, reply=reply)

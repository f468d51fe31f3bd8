"""Answers with checked citations: the prompt numbers the sources, the answer cites them as [n], and every [n] is
checked against the chunks that were retrieved; one that names no source is dropped (and counted), the others are
rendered as `path:line`. With a checker (`rag.citations`), each kept [n] is also judged against the text of source
n, and one whose sentence it does not support shows as [n?], in the stream and in the answer. With no source
similar enough to the question, the answer is "I don't know" and the LLM is not asked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from onecard.rag.citations import CitationChecker, Verdict, render_citation, sentence_before
from onecard.rag.search import Hit

__all__ = ["Answer", "build_messages", "check_citations", "checked", "CitationFilter", "answer", "IDK", "SYSTEM"]

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
    checks: list[Verdict] = field(default_factory=list)  # one per kept citation, in order, when a checker ran

    def citations(self) -> list[dict[str, Any]]:
        """Each cited source: its number, chunk id and `path:line`."""
        return [{"n": n, "id": self.sources[n - 1].chunk["id"], "location": self.sources[n - 1].location}
                for n in self.cited]

    @property
    def unsupported(self) -> list[Verdict]:
        return [v for v in self.checks if not v.supported]

    def to_json(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.text, "abstained": self.abstained,
                "citations": self.citations(), "invalid_citations": self.invalid_citations,
                "citation_checks": [v.to_json() for v in self.checks],
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
    """Streams text through, holding back a possible `[...]` until it closes, so invalid citations never show; with a
    checker, a kept citation whose source does not support its sentence (the text before it) shows as `[n?]`."""

    def __init__(self, n_sources: int, checker: CitationChecker | None = None,
                 hits: list[Hit] | None = None) -> None:
        self.n_sources = n_sources
        self.checker = checker
        self.hits = hits or []
        self.held = ""
        self.shown = ""  # all text released so far: the sentence a citation closes is its tail
        self.cited: list[int] = []
        self.invalid = 0

    def feed(self, chunk: str) -> str:
        start = len(self.shown)
        for ch in chunk:
            if self.held:
                self.held += ch
                if ch == "]" or not re.fullmatch(r"\[[\d,\s]*\]?", self.held) or len(self.held) > 24:
                    self.shown += self._release()
            elif ch == "[":
                self.held = ch
            else:
                self.shown += ch
        return self.shown[start:]

    def flush(self) -> str:
        start = len(self.shown)
        if self.held:
            self.shown += self._release()
        return self.shown[start:]

    def _release(self) -> str:
        text, self.held = self.held, ""
        if not _CITATION.fullmatch(text):
            return text
        cleaned, cited, invalid = check_citations(text, self.n_sources)
        self.invalid += invalid
        self.cited += [n for n in cited if n not in self.cited]
        if self.checker is None or not cited:
            return cleaned
        numbers = [int(x) for x in cleaned[1:-1].split(",")]
        verdicts = self.checker.judge(sentence_before(self.shown), numbers, self.hits)
        return render_citation(numbers, {v.n for v in verdicts if not v.supported})


def answer(backend: Any, question: str, hits: list[Hit], *, min_score: float,
           on_text: Callable[[str], None] | None = None, history: list[dict[str, Any]] | None = None,
           temperature: float = 0.0, max_tokens: int = 384, checker: CitationChecker | None = None) -> Answer:
    """Answer `question` from `hits` through `backend` (an `onecard.llm` Backend), streaming to `on_text`; with a
    `checker`, each citation is judged against its source's text and an unsupported one is marked `[n?]`."""
    if not hits or max(h.similarity for h in hits) < min_score:
        if on_text:
            on_text(IDK)
        return Answer(question, IDK, hits, abstained=True)
    messages = build_messages(question, hits, history)
    stream = backend.stream(messages, temperature=temperature, max_tokens=max_tokens)
    filt = CitationFilter(len(hits), checker, hits)
    raw = []
    for chunk in stream:
        raw.append(chunk)
        shown = filt.feed(chunk)
        if on_text and shown:
            on_text(shown)
    tail = filt.flush()
    if on_text and tail:
        on_text(tail)
    reply = stream.reply.to_json() if stream.reply is not None else None
    return checked(Answer(question, "".join(raw), hits, reply=reply), checker)


def checked(result: Answer, checker: CitationChecker | None) -> Answer:
    """`result` with its citations checked: out-of-range ones dropped and counted, and with a `checker` each kept one
    judged against its source (the checker's cache makes this free after streaming) and marked `[n?]` if unsupported."""
    text, cited, invalid = check_citations(result.text, len(result.sources))
    verdicts: list[Verdict] = []
    if checker is not None:
        text, verdicts = checker.check(text, result.sources)
    return replace(result, text=text, cited=cited, invalid_citations=invalid, checks=verdicts)

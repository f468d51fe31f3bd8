"""Citations are checked against what was retrieved: invalid [n] dropped and counted, even while streaming."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from onecard.rag.answer import IDK, CitationFilter, answer, build_messages, check_citations
from onecard.rag.search import Hit


def _hit(n: int, similarity: float = 0.8) -> Hit:
    chunk = {"id": f"c{n}", "path": f"/notes/n{n}.md", "rel": f"n{n}.md", "part": None, "start_line": 10 * n,
             "end_line": 10 * n + 3, "heading": ("Notes",), "symbol": None, "language": "markdown",
             "text": f"Fact number {n}."}
    return Hit(n, 1.0, chunk, similarity)


def test_invalid_citations_are_dropped_and_counted() -> None:
    text, cited, invalid = check_citations("Paris [1] is big [3, 2]. Wrong [7]. Also [0].", 3)
    assert text == "Paris [1] is big [3, 2]. Wrong. Also."
    assert cited == [1, 3, 2] and invalid == 2
    assert check_citations("[4, 5] only", 3) == ("only", [], 2)


def test_streamed_citations_are_checked_across_chunk_boundaries() -> None:
    f = CitationFilter(2)
    pieces = ["Answer [", "1] and [", "9", "] and [a] list[2]", "."]
    shown = "".join(f.feed(p) for p in pieces) + f.flush()
    assert shown == "Answer [1] and  and [a] list[2]."
    assert f.cited == [1, 2] and f.invalid == 1


class FakeBackend:
    """Streams a fixed reply in small pieces, like onecard.llm backends."""

    def __init__(self, reply: str) -> None:
        self.reply_text = reply
        self.messages: list[dict[str, Any]] = []

    def stream(self, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        from onecard.llm import Reply, Stream

        self.messages = messages

        def gen() -> Generator[str, None, Reply]:
            for i in range(0, len(self.reply_text), 3):
                yield self.reply_text[i:i + 3]
            return Reply(self.reply_text, completion_tokens=5)

        return Stream(gen())


def test_answer_streams_renders_locations_and_drops_invalid_citations() -> None:
    backend = FakeBackend("It is fact two [2], not [5].")
    shown: list[str] = []
    result = answer(backend, "Which fact?", [_hit(1), _hit(2)], min_score=0.3, on_text=shown.append)
    assert "".join(shown) == "It is fact two [2], not ."  # streamed: the dropped citation's space stays
    assert result.text == "It is fact two [2], not."
    assert result.invalid_citations == 1
    assert result.citations() == [{"n": 2, "id": "c2", "location": "/notes/n2.md:20-23"}]  # absolute: openable
    prompt = backend.messages[-1]["content"]
    assert "[1] /notes/n1.md:10-13 (Notes)\nFact number 1." in prompt and prompt.endswith("Question: Which fact?")


def test_no_relevant_evidence_means_i_dont_know_without_asking() -> None:
    backend = FakeBackend("should not be asked")
    result = answer(backend, "Unrelated?", [_hit(1, 0.1), _hit(2, 0.05)], min_score=0.3)
    assert result.abstained and result.text == IDK and backend.messages == []


def test_history_goes_between_the_rules_and_the_question() -> None:
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    messages = build_messages("q?", [_hit(1)], history)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]


def test_read_file_tool_stays_inside_the_indexed_folders(tmp_path: Path, embedder: Any) -> None:
    pytest.importorskip("faiss")
    from onecard.rag.index import build_index, open_index
    from onecard.rag.search import Searcher
    from onecard.rag.tools import rag_tools

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nalpha line\n")
    (tmp_path / "secret.txt").write_text("do not read")
    build_index(tmp_path / "index", [docs], embedder)
    sources: list[Hit] = []
    tools = {t.name: t.fn for t in rag_tools(Searcher(open_index(tmp_path / "index"), embedder), sources)}
    assert tools["read_file"]("a.md", 3) == "3: alpha line"
    with pytest.raises(PermissionError):
        tools["read_file"](str(tmp_path / "secret.txt"))
    with pytest.raises(PermissionError):
        tools["read_file"]("../secret.txt")
    assert tools["list_files"]("*.md") == "a.md"
    assert "docs/a.md:1-3" in tools["search"]("alpha") and len(sources) == 1

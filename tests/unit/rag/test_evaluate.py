"""The eval harness on a JSONL of questions against a small index: gold files matched, answers scored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from onecard.core.errors import DataError
from onecard.rag.answer import Answer
from onecard.rag.evaluate import answer_eval, load_qa, retrieval_eval

pytest.importorskip("faiss")
pytest.importorskip("bm25s")


@pytest.fixture
def searcher(tmp_path: Path, embedder: Any) -> Any:
    from onecard.rag.index import build_index, open_index
    from onecard.rag.search import Searcher

    docs = tmp_path / "docs"
    (docs / "net").mkdir(parents=True)
    (docs / "net" / "vpn.md").write_text("# VPN\n\nWireGuard listens on port 51820.\n")
    (docs / "food.md").write_text("# Food\n\nBuy apples and pears.\n")
    build_index(tmp_path / "index", [docs], embedder)
    return Searcher(open_index(tmp_path / "index"), embedder)


def test_qa_questions_score_against_gold_files(tmp_path: Path, searcher: Any) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps(r) for r in [
        {"question": "wireguard port", "answers": ["51820"], "gold_files": ["vpn.md"]},
        {"question": "apples pears", "answers": ["apples"], "gold_files": ["food.md"]},
        {"question": "unanswerable thing"},
    ]) + "\n")
    idx = searcher.index
    evalset = load_qa(qa, idx.rels, idx.paths)
    assert evalset.qrels["1"] == {"net/vpn.md": 1} and evalset.qrels["3"] == {}
    result = retrieval_eval(searcher, evalset, idx.rels.__getitem__, ("bm25", "hybrid"))
    assert result["bm25"]["mrr@10"] == 1.0 and result["hybrid"]["recall@5"] == 1.0


def test_answers_are_scored_with_citation_precision_and_abstention(tmp_path: Path, searcher: Any) -> None:
    from onecard.rag.evaluate import EvalSet

    evalset = EvalSet({"a": "wireguard port", "b": "nothing"}, {"a": {"net/vpn.md": 1}}, {"a": ["51820"], "b": []})

    def ask(question: str) -> Answer:
        hits = searcher.search(question, k=2)
        if question == "nothing":
            return Answer(question, "I don't know.", hits, abstained=True)
        vpn = next(n for n, h in enumerate(hits, start=1) if h.chunk["rel"] == "net/vpn.md")
        return Answer(question, "51820", hits, cited=[vpn, 3 - vpn], invalid_citations=1)

    scored = answer_eval(ask, evalset, 2, lambda h: h.chunk["rel"])["metrics"]
    assert scored["exact_match"] == 1.0 and scored["token_f1"] == 1.0
    assert scored["citation_precision"] == 0.5 and scored["invalid_citations"] == 1
    assert scored["abstain_rate"] == 1.0


def test_a_bad_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"question": "ok"}\n{not json}\n')
    with pytest.raises(DataError, match=r"qa.jsonl:2: not JSON"):
        load_qa(qa, [], [])


def test_generated_questions_keep_only_answers_found_in_their_passage() -> None:
    from onecard.llm import Reply
    from onecard.rag.evaluate import generate_questions

    class Drafts:
        def __init__(self) -> None:
            self.replies = iter(['{"question": "Which port?", "answer": "51820"}',
                                 '{"question": "Made up?", "answer": "not in the text"}'])

        def chat(self, messages: list[dict[str, Any]], **kwargs: Any) -> Reply:
            assert kwargs["json_schema"]["required"] == ["question", "answer"]
            return Reply(next(self.replies))

    text = "WireGuard listens on port 51820 and the keys are kept in the etc folder of the router " * 2
    chunks = [{"id": f"c{i}", "rel": f"n{i}.md", "text": text, "start_line": 1, "end_line": 3} for i in range(2)]
    rows = generate_questions(Drafts(), chunks, 2)
    assert len(rows) == 1 and rows[0]["answers"] == ["51820"] and rows[0]["gold_files"][0] in ("n0.md", "n1.md")


def _beir(root: Path, corpus: bytes, queries: bytes, qrels: bytes) -> Path:
    root.mkdir(exist_ok=True)
    (root / "corpus.jsonl").write_bytes(corpus)
    (root / "queries.jsonl").write_bytes(queries)
    (root / "qrels.tsv").write_bytes(qrels)
    return root


GOOD = (b'\xef\xbb\xbf{"_id": "d1", "title": "VPN", "text": "port 51820"}\n{"_id": 2, "text": "printer"}\n',
        b'{"_id": "q1", "text": "which port?", "answers": ["51820"]}\n\n', b"query-id\tcorpus-id\tscore\nq1\td1\t1\n")


def test_a_beir_folder_loads_with_a_bom_numeric_ids_and_blank_lines(tmp_path: Path) -> None:
    from onecard.rag.evaluate import load_beir

    loaded = load_beir(_beir(tmp_path / "beir", *GOOD))
    assert [d["_id"] for d in loaded.corpus] == ["d1", "2"] and loaded.corpus[1]["title"] == ""
    assert loaded.queries == {"q1": "which port?"} and loaded.answers == {"q1": ["51820"]}
    assert loaded.qrels == {"q1": {"d1": 1}}


@pytest.mark.parametrize(("which", "content", "message"), [
    (0, GOOD[0] + b'{"_id": "d3", "text": "caf\xe9"}\n', r"corpus.jsonl:3: not UTF-8 text"),
    (1, b'{"_id": "q1", "text": "\xff"}\n', r"queries.jsonl:1: not UTF-8 text"),
    (2, GOOD[2] + b"q1\td\xe92\t1\n", r"qrels.tsv:3: not UTF-8 text"),
    (2, GOOD[2] + b"q1\td2\tnan\n", r"qrels.tsv:3: the score 'nan' is not a finite number"),
    (2, GOOD[2] + b"q1\td2\t1e999\n", r"qrels.tsv:3: the score '1e999' is not a finite number"),
    (0, GOOD[0] + b'["d3", "text"]\n', r"corpus.jsonl:3: a JSON list, not an object"),
    (0, GOOD[0] + b'{"_id": "d3"}\n', r"corpus.jsonl:3: no 'text' key"),
    (0, GOOD[0] + b'{"_id": "d3", "text": 7}\n', r"corpus.jsonl:3: 'text' is 7, not a string"),
    (1, b'{"_id": "q1", "text": "x", "answers": "51820"}\n', r"queries.jsonl:1: 'answers' is \"51820\", not a list"),
    (1, b'{"_id": "q1", "text": "x"}\n' + b"[" * 100_000 + b"\n", r"queries.jsonl:2: not JSON"),
])
def test_a_bad_beir_file_is_named_by_file_and_line(tmp_path: Path, which: int, content: bytes, message: str) -> None:
    from onecard.rag.evaluate import load_beir

    files = list(GOOD)
    files[which] = content
    with pytest.raises(DataError, match=message):
        load_beir(_beir(tmp_path / "beir", *files))


def test_a_qa_file_that_is_not_utf8_or_has_wrong_types_is_named(tmp_path: Path) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_bytes(b'{"question": "ok"}\n{"question": "caf\xe9?"}\n')
    with pytest.raises(DataError, match=r"qa.jsonl:2: not UTF-8 text"):
        load_qa(qa, [], [])
    qa.write_bytes(b'{"question": "ok", "gold_files": ["a\\u0000b", 3]}\n{"question": ["no"]}\n')
    with pytest.raises(DataError, match=r"qa.jsonl:2: 'question' is \[\"no\"\], not a string"):
        load_qa(qa, [], [])

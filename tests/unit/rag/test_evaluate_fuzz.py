"""Fuzz the evaluation loaders (a BEIR folder, a JSONL of questions): random bytes, random JSON lines and rows with
random values either load or raise an OnecardError that names the file, never another exception (issue 14)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from onecard.core.errors import OnecardError
from onecard.rag.evaluate import EvalSet, load_beir, load_qa

pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None)  # the same cases every run

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8)
rows = st.dictionaries(st.sampled_from(["_id", "id", "text", "title", "answers", "question", "gold_files"])
                       | st.text(max_size=4), json_values, max_size=5)
good_rows = st.fixed_dictionaries(  # rows a loader accepts, so that the success path is fuzzed too
    {"_id": st.text(max_size=4) | st.integers(), "text": st.text(max_size=10), "question": st.text(max_size=10)},
    optional={"title": st.text(max_size=6), "answers": st.lists(st.text(max_size=4), max_size=2),
              "gold_files": st.lists(st.text(max_size=8) | st.just("a.md"), max_size=2)})
json_lines = st.lists(st.one_of(good_rows.map(json.dumps), rows.map(json.dumps), json_values.map(json.dumps),
                                st.text(max_size=12)), max_size=6)
# a line of a file: maybe JSON, maybe not; the file: those lines as UTF-8 (maybe with a BOM or a stray byte), or bytes
jsonl_files = st.one_of(
    st.binary(max_size=120),
    st.tuples(st.sampled_from([b"", b"\xef\xbb\xbf"]), json_lines, st.sampled_from([b"", b"\xff", b"\n\x80"])).map(
        lambda t: t[0] + "\n".join(t[1]).encode() + t[2]))
fields = st.one_of(st.text(max_size=6), st.sampled_from(["q1", "d1", "1", "0", "2.5", "nan", "inf", "-1e999", "", " "]))
qrels_files = st.one_of(
    st.binary(max_size=120),
    st.lists(st.lists(fields, max_size=4).map("\t".join), max_size=6).map(lambda ls: "\n".join(ls).encode()))


@FUZZ
@given(corpus=jsonl_files, queries=jsonl_files, qrels=qrels_files)
def test_a_beir_folder_loads_or_says_which_file_is_wrong(corpus: bytes, queries: bytes, qrels: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "corpus.jsonl").write_bytes(corpus)
        (root / "queries.jsonl").write_bytes(queries)
        (root / "qrels.tsv").write_bytes(qrels)
        try:
            loaded = load_beir(root)
        except OnecardError as e:
            assert str(root) in e.what  # the file (and line) is named
        else:
            assert isinstance(loaded, EvalSet)
            assert all(isinstance(d[k], str) for d in loaded.corpus for k in ("_id", "title", "text"))
            assert all(isinstance(t, str) for t in loaded.queries.values())


@FUZZ
@given(content=jsonl_files)
def test_a_qa_file_loads_or_says_which_line_is_wrong(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        qa = Path(tmp) / "qa.jsonl"
        qa.write_bytes(content)
        try:
            loaded = load_qa(qa, ["a.md", "notes/b.md"], [f"{tmp}/a.md", f"{tmp}/notes/b.md"])
        except OnecardError as e:
            assert str(qa) in e.what
        else:
            assert all(isinstance(q, str) for q in loaded.queries.values())

"""Fuzz the JSONL loader of `onecard tune`: random bytes, random JSON lines and rows with random values either load
(rows a run can write back and dedupe) or raise an OnecardError that names the file, never another exception
(issue 14)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from onecard.core.errors import OnecardError
from onecard.tune.data import dedupe, load_examples, read_examples, write_jsonl

pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = settings(max_examples=400, deadline=None, derandomize=True, database=None)  # the same cases every run

# text with everything JSON can carry: half of a UTF-16 pair ("\ud83d" once dumped) too, which UTF-8 cannot hold
texts = st.text(max_size=8) | st.sampled_from(["\ud83d", "x\udc00", "é😀", " "])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "bot"]) | texts,
                                           "content": texts | json_values}), max_size=4)
rows = st.dictionaries(
    st.sampled_from(["instruction", "input", "output", "system", "prompt", "response", "completion", "messages"])
    | st.text(max_size=4), json_values | messages, max_size=4)


def good_rows(t: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, object]]:
    """Rows of the three formats, with texts from `t` (rows the loader accepts, so that success is fuzzed too)."""
    return st.one_of(
        st.fixed_dictionaries({"instruction": t, "output": t}, optional={"input": t, "system": t}),
        st.fixed_dictionaries({"prompt": t, "response": t}),
        st.tuples(t, t).map(lambda u: {"messages": [{"role": "user", "content": u[0]},
                                                    {"role": "assistant", "content": u[1]}]}))


json_lines = st.lists(st.one_of(good_rows(texts).map(json.dumps), rows.map(json.dumps), json_values.map(json.dumps),
                                st.text(max_size=12)), max_size=6)
# the file: those lines as UTF-8 (maybe with a BOM, a stray byte, CRLF), rows a run may take, or bytes
jsonl_files = st.one_of(
    st.binary(max_size=160),
    st.lists(good_rows(st.text(min_size=1, max_size=8).filter(str.strip)).map(json.dumps), min_size=1,
             max_size=4).map(lambda ls: "\n".join(ls).encode()),
    st.tuples(st.sampled_from([b"", b"\xef\xbb\xbf"]), json_lines, st.sampled_from(["\n", "\r\n"]),
              st.sampled_from([b"", b"\xff", b"\n\x80", b"\n[[[[[[[[[["])).map(
        lambda t: t[0] + t[2].join(t[1]).encode("utf-8", "surrogatepass") + t[3]))


@FUZZ
@given(content=jsonl_files)
def test_a_jsonl_file_loads_or_says_which_file_and_line_is_wrong(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        path.write_bytes(content)
        try:
            report = read_examples(path)
        except OnecardError as e:
            assert str(path) in e.what
            return
        assert all(b.line >= 1 and b.reason for b in report.bad)
        try:
            examples = load_examples(path)
        except OnecardError as e:
            assert f"{path}:{report.bad[0].line}: " in e.what
            return
        assert not report.bad and all(ex.messages[-1]["role"] == "assistant" for ex in examples)
        dedupe(examples)
        write_jsonl(examples, Path(tmp) / "train.jsonl")  # what a run stores, and reads back as it was
        assert [ex.messages for ex in load_examples(Path(tmp) / "train.jsonl")] == [ex.messages for ex in examples]

"""Data: the three formats, every bad line named by number with its reason, duplicates, the seeded split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onecard.core.errors import DataError
from onecard.tune.data import dedupe, load_examples, read_examples, split, to_messages

ROWS = [
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
    "not json {",
    {"prompt": "Capital of France?", "response": "Paris"},
    {"question": "q", "answer": "a"},
    {"instruction": "Say hi.", "output": ""},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
    {"messages": [{"role": "user", "content": "Hi"}]},
    {"messages": [{"role": "bot", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
    [1, 2],
    {"prompt": "Capital of France?", "response": "Paris"},
]


def _write(path: Path, rows: list[object]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines[:5]) + "\n\n" + "\n".join(lines[5:]) + "\n")  # a blank line is not a row
    return path


def test_each_format_becomes_a_conversation_ending_with_the_answer() -> None:
    assert to_messages({"instruction": "Add.", "input": "2 and 3", "output": "5", "system": "Be brief."}) == (
        "alpaca", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add.\n\n2 and 3"},
                   {"role": "assistant", "content": "5"}])
    assert to_messages({"prompt": "p", "completion": "c"})[1][-1] == {"role": "assistant", "content": "c"}
    kind, messages = to_messages({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                                               {"role": "assistant", "content": "a", "extra": 1}]})
    assert kind == "chat" and messages[-1] == {"role": "assistant", "content": "a"}


def test_every_bad_line_is_reported_by_number_with_its_reason(tmp_path: Path) -> None:
    report = read_examples(_write(tmp_path / "pairs.jsonl", ROWS))
    reasons = {b.line: b.reason for b in report.bad}
    # line numbers count the blank line after row 5
    assert sorted(reasons) == [2, 4, 5, 8, 9, 10]
    assert reasons[2].startswith("not valid JSON")
    assert "no known format" in reasons[4] and "answer, question" in reasons[4]
    assert reasons[5] == "'output' is empty"
    assert "must be the assistant's turn" in reasons[8]
    assert "role 'bot'" in reasons[9]
    assert "expected a JSON object, got list" in reasons[10]
    assert [ex.line for ex in report.examples] == [1, 3, 7, 11]  # nothing else dropped
    assert dict(report.formats) == {"alpaca": 1, "prompt": 2, "chat": 1}
    with pytest.raises(DataError, match=r"(?s)6 bad line\(s\).*pairs.jsonl:2: not valid JSON"):
        load_examples(tmp_path / "pairs.jsonl")


def test_duplicates_keep_the_first_and_name_both_lines(tmp_path: Path) -> None:
    kept, dropped = dedupe(read_examples(_write(tmp_path / "pairs.jsonl", ROWS)).examples)
    assert dropped == [(11, 3)] and [ex.line for ex in kept] == [1, 3, 7]


def test_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(40)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = load_examples(tmp_path / "d.jsonl")
    train, dev = split(examples, 0.1, seed=7)
    again, dev_again = split(examples, 0.1, seed=7)
    assert len(dev) == 4 and len(train) == 36 and [e.line for e in dev] == [e.line for e in dev_again]
    assert not {e.line for e in train} & {e.line for e in dev}
    assert [e.line for e in split(examples, 0.1, seed=8)[1]] != [e.line for e in dev]


def test_missing_file_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_examples(tmp_path / "nope.jsonl")

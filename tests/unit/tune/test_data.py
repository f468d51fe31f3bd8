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


def test_a_folder_is_named_as_a_folder_with_the_file_expected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is a folder; a JSONL file with one example per line is expected") as e:
        read_examples(tmp_path)
    assert e.value.fix == "pass the JSONL file's path"
    (tmp_path / "train.jsonl").write_text('{"prompt": "p", "response": "r"}\n')
    with pytest.raises(DataError, match="is a folder") as e:
        read_examples(tmp_path)
    assert e.value.fix == f"pass a file inside it, e.g. {tmp_path / 'train.jsonl'}"


def test_a_line_that_is_not_utf8_is_named_with_its_byte_and_a_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "p", "response": "r"}\n'
                     + '{"prompt": "café", "response": "r"}\n'.encode("latin-1")
                     + b'{"prompt": "\\ud83d", "response": "r"}\n')  # valid JSON, but half of a UTF-16 pair
    report = read_examples(path)
    assert [ex.line for ex in report.examples] == [1]
    assert [(b.line, b.reason) for b in report.bad] == [
        (2, "not UTF-8 (byte 0xe9 at byte 16 of the line); save the file as UTF-8"),
        (3, "message 1 (user) holds \\ud83d, half of a UTF-16 surrogate pair; write the character itself or both "
            "halves")]
    with pytest.raises(DataError, match=f"{path}:2: not UTF-8"):
        load_examples(path)


def test_json_python_cannot_read_is_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text("[" * 100_000 + "\n" + '{"prompt": ' + "9" * 5000 + "}\n")
    assert [(b.line, b.reason) for b in read_examples(path).bad] == [
        (1, "not usable JSON (nested too deeply)"), (2, "not usable JSON (a number of more than 4,300 digits)")]


def test_an_overlong_line_is_named_and_skipped_without_being_held(tmp_path: Path) -> None:
    import tracemalloc

    from onecard.tune.data import MAX_ROW_BYTES

    path = tmp_path / "long.jsonl"
    long_row = json.dumps({"prompt": "x" * (8 * MAX_ROW_BYTES), "response": "r"})
    path.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n" + long_row + "\n"
                    + json.dumps({"prompt": "c", "response": "d"}) + "\n" + "y" * (MAX_ROW_BYTES + 1))
    del long_row
    tracemalloc.start()
    try:
        report = read_examples(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * MAX_ROW_BYTES  # the 8 MiB line was read in 1 MiB pieces and dropped
    assert [ex.line for ex in report.examples] == [1, 3]
    assert [b.line for b in report.bad] == [2, 4]
    assert report.bad[0].reason == (f"the line is {8 * MAX_ROW_BYTES + 31:,} bytes, over the {MAX_ROW_BYTES:,} a "
                                    "row may hold (~250k tokens, longer than any sequence a card trains on)")
    assert report.bad[1].reason.startswith(f"the line is {MAX_ROW_BYTES + 1:,} bytes")

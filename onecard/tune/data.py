"""Instruction data: the JSONL formats people have, every bad line named by number, duplicates, a seeded split.

Each row becomes a conversation (a list of {"role", "content"} messages ending with the assistant's turn):

    alpaca   {"instruction", "input"?, "output", "system"?}   -> user: instruction (+ blank line + input),
                                                                 assistant: output
    prompt   {"prompt", "response"} or {"prompt", "completion"} -> user: prompt, assistant: response
    chat     {"messages": [{"role", "content"}, ...]}          -> as is (system?, then user/assistant turns)
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from onecard.core.errors import DataError
from onecard.core.peft_run import dedupe_rows
from onecard.core.peft_run import split_rows as split

__all__ = ["Example", "BadLine", "DataReport", "read_examples", "to_messages", "dedupe", "split", "write_jsonl",
           "load_examples"]

ROLES = ("system", "user", "assistant")
# A row's limit in bytes: 1 MiB of text is ~250k tokens, more than any sequence one card trains on (the guide's
# project trains at 2,048). A longer line is named and skipped before it is read whole.
MAX_ROW_BYTES = 1 << 20


@dataclass
class Example:
    """One training row as a conversation, with the line it came from."""

    messages: list[dict[str, str]]
    line: int
    format: str = "chat"


@dataclass
class BadLine:
    line: int
    reason: str


@dataclass
class DataReport:
    """What reading a file found: the good rows, the bad lines with their reasons, and the formats seen."""

    path: str
    examples: list[Example]
    bad: list[BadLine] = field(default_factory=list)
    formats: Counter[str] = field(default_factory=Counter)

    def raise_if_bad(self, limit: int = 10) -> None:
        """A DataError naming the first `limit` bad lines by number, if there are any."""
        if not self.bad:
            return
        lines = "\n".join(f"  {self.path}:{b.line}: {b.reason}" for b in self.bad[:limit])
        more = f"\n  ... and {len(self.bad) - limit} more" if len(self.bad) > limit else ""
        raise DataError(f"{len(self.bad)} bad line(s) in {self.path}:\n{lines}{more}",
                        f"fix or remove them; `onecard tune data check {self.path}` lists them all")


def _text(obj: dict[str, Any], key: str, required: bool = True) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if key not in obj:
        raise ValueError(f"'{key}' is missing (keys: {', '.join(sorted(obj))})")
    if not isinstance(value, str):
        raise ValueError(f"'{key}' must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise ValueError(f"'{key}' is empty")
    return value


def to_messages(obj: Any) -> tuple[str, list[dict[str, str]]]:
    """(format, messages) of one parsed row; a ValueError says why the row is not usable."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if "messages" in obj:
        messages = obj["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("'messages' must be a non-empty list")
        out = []
        for i, m in enumerate(messages, 1):
            if not isinstance(m, dict) or not isinstance(m.get("content"), str):
                raise ValueError(f"'messages' item {i}: expected {{\"role\": ..., \"content\": \"...\"}}")
            if m.get("role") not in ROLES:
                raise ValueError(f"'messages' item {i}: role {m.get('role')!r} is not one of {', '.join(ROLES)}")
            if m["role"] == "system" and i != 1:
                raise ValueError(f"'messages' item {i}: a system message may only come first")
            out.append({"role": m["role"], "content": m["content"]})
        if out[-1]["role"] != "assistant":
            raise ValueError(f"the last message is from the {out[-1]['role']}; it must be the assistant's turn")
        if not out[-1]["content"].strip():
            raise ValueError("the last assistant message is empty")
        return "chat", out
    if "instruction" in obj:
        user = _text(obj, "instruction")
        extra = _text(obj, "input", required=False)
        system = _text(obj, "system", required=False)
        head = [{"role": "system", "content": system}] if system.strip() else []
        return "alpaca", [*head, {"role": "user", "content": user + (f"\n\n{extra}" if extra.strip() else "")},
                          {"role": "assistant", "content": _text(obj, "output")}]
    if "prompt" in obj:
        answer_key = "completion" if "completion" in obj else "response"
        return "prompt", [{"role": "user", "content": _text(obj, "prompt")},
                          {"role": "assistant", "content": _text(obj, answer_key)}]
    keys = ", ".join(sorted(obj)) or "none"
    raise ValueError(f"no known format: expected instruction/output, prompt/response or messages (keys: {keys})")


def read_examples(path: str | Path) -> DataReport:
    """Read every line of a JSONL file; bad lines are kept in the report with their reasons, never dropped silently.

    Lines are read as bytes and measured first: one over `MAX_ROW_BYTES` is named and skipped without being held
    (a 50 MB row cost 10 GB once tokenized); one that is not UTF-8 is named with the offending byte.
    """
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.jsonl"))
        raise DataError(f"{path} is a folder; a JSONL file with one example per line is expected",
                        f"pass a file inside it, e.g. {path / inside[0]}" if inside else "pass the JSONL file's path")
    if not path.is_file():
        raise DataError(f"{path} does not exist", "pass a JSONL file with one example per line")
    report = DataReport(str(path), [])
    with path.open("rb") as f:
        for number, (raw, size) in enumerate(_lines(f, MAX_ROW_BYTES), 1):
            if raw is None:
                report.bad.append(BadLine(number, f"the line is {size:,} bytes, over the {MAX_ROW_BYTES:,} a row may "
                                                  "hold (~250k tokens, longer than any sequence a card trains on)"))
                continue
            if not raw.strip():
                continue  # a blank line is not a row
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")  # a BOM may open the file
            except UnicodeDecodeError as e:
                report.bad.append(BadLine(number, f"not UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1} of "
                                                  "the line); save the file as UTF-8"))
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                report.bad.append(BadLine(number, f"not valid JSON ({e.msg} at column {e.colno})"))
                continue
            except RecursionError:
                report.bad.append(BadLine(number, "not usable JSON (nested too deeply)"))
                continue
            except ValueError:  # the one other error json.loads raises on a str: Python's limit on int digits
                report.bad.append(BadLine(number, "not usable JSON (a number of more than "
                                                  f"{sys.get_int_max_str_digits():,} digits)"))
                continue
            try:
                kind, messages = to_messages(obj)
                _encodable(messages)
            except ValueError as e:
                report.bad.append(BadLine(number, str(e)))
                continue
            report.examples.append(Example(messages, number, kind))
            report.formats[kind] += 1
    if not report.examples and not report.bad:
        raise DataError(f"{path} has no rows", "put one JSON object per line")
    return report


def _encodable(messages: list[dict[str, str]]) -> None:
    """A ValueError if a text holds half of a UTF-16 pair (`"\\ud83d"` without its partner): valid JSON, but no UTF-8
    file (the run's split) or tokenizer takes it."""
    for i, m in enumerate(messages, 1):
        try:
            m["content"].encode("utf-8")
        except UnicodeEncodeError as e:
            half = m["content"][e.start].encode("unicode_escape").decode()
            raise ValueError(f"message {i} ({m['role']}) holds {half}, half of a UTF-16 surrogate pair; "
                             "write the character itself or both halves") from None


def _lines(f: BinaryIO, limit: int) -> Iterator[tuple[bytes | None, int]]:
    """(line, its length in bytes without the newline) for each line of `f`; a line longer than `limit` bytes is
    (None, its length), its rest read in 64 KiB chunks and never held whole."""
    while line := f.readline(limit + 1):
        size = len(line) - line.endswith(b"\n")
        if size <= limit:
            yield line, size
            continue
        while not line.endswith(b"\n") and (line := f.readline(1 << 16)):
            size += len(line) - line.endswith(b"\n")
        yield None, size


def load_examples(path: str | Path) -> list[Example]:
    """The rows of a file, or a DataError listing its bad lines."""
    report = read_examples(path)
    report.raise_if_bad()
    return report.examples


def dedupe(examples: list[Example]) -> tuple[list[Example], list[tuple[int, int]]]:
    """Keep the first of rows that are exactly the same conversation; (line, line of the first) for each dropped."""
    return dedupe_rows(examples, key=lambda ex: json.dumps(ex.messages, sort_keys=True))


def write_jsonl(examples: list[Example], path: Path) -> None:
    """Write rows as chat JSONL (the format every command reads back), with the source line of each."""
    with path.open("w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps({"messages": ex.messages, "source_line": ex.line}, ensure_ascii=False) + "\n")

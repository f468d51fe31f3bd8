"""JSON-schema files and reply validation: what is wrong, and where."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onecard.core.errors import ConfigError
from onecard.llm import InvalidOutputError
from onecard.llm.schema import load_schema, validate

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "tags": {"type": "array",
                                                                               "items": {"type": "string"}}},
          "required": ["city"]}


def test_a_valid_reply_is_parsed() -> None:
    assert validate('{"city": "Paris", "tags": ["capital"]}', SCHEMA) == {"city": "Paris", "tags": ["capital"]}


def test_an_invalid_reply_says_where() -> None:
    with pytest.raises(InvalidOutputError, match="at tags/0: 3 is not of type 'string'"):
        validate('{"city": "Paris", "tags": [3]}', SCHEMA)
    with pytest.raises(InvalidOutputError, match="at \\(top level\\): 'city' is a required property"):
        validate("{}", SCHEMA)
    with pytest.raises(InvalidOutputError, match="(?s)not valid JSON.*--max-tokens"):
        validate('{"city": "Par', SCHEMA)


def test_schema_files_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "s.json"
    good.write_text(json.dumps(SCHEMA))
    assert load_schema(good) == SCHEMA
    with pytest.raises(ConfigError, match="does not exist"):
        load_schema(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"type": "object",\n "properties": }')
    with pytest.raises(ConfigError, match="bad.json:2: not valid JSON"):
        load_schema(tmp_path / "bad.json")
    (tmp_path / "wrong.json").write_text('{"type": "objekt"}')
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        load_schema(tmp_path / "wrong.json")

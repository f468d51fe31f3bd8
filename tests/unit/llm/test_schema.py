"""JSON-schema files, their bounds for a grammar, and reply validation: what is wrong, and where."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from onecard.core.errors import ConfigError
from onecard.llm import InvalidOutputError, UnsupportedError
from onecard.llm.schema import (
    MAX_ITEMS,
    MAX_STRING_CHARS,
    bounded,
    check_schema,
    load_schema,
    max_reply_chars,
    validate,
)

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


@pytest.mark.parametrize(("content", "problem"), [
    (b"true", "the schema is true, not an object"),
    (b"42", "the schema is 42, not an object"),
    (b'[{"type": "object"}]', 'the schema is \\[{"type": "object"}\\], not an object'),
    (b'"object"', 'the schema is "object", not an object'),
    (b"null", "the schema is null, not an object"),
    (b'{"type": "object", "properties": {"city": {"$ref": "#/$defs/city"}}}', "'#/\\$defs/city' points to nothing"),
    (b'{"$ref": "other.json#/city"}', "'other.json#/city' points to nothing"),
    (b'{"$schema": ["draft"]}', 'unknown \\$schema \\["draft"\\]'),
    (b'{"$schema": "https://example.com/my-dialect"}', "unknown \\$schema"),
    (b'{"type": "string", "pattern": "("}', "not a valid JSON Schema at pattern"),
    (b'{"type": "object", "title": "caf\xe9"}', "not UTF-8 text \\(byte 32 is b'\\\\xe9'\\)"),
    (b"\xff\xfe{\x00}\x00", "not UTF-8 text \\(byte 0"),
    (b"[" * 100_000 + b"]" * 100_000, "not usable JSON"),
    (b"1" * 5000, "not usable JSON"),
])
def test_unusable_schemas_are_named_errors_before_any_generation(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "schema.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}:.*{problem}"):
        load_schema(path)


def test_refs_that_resolve_are_fine(tmp_path: Path) -> None:
    schema = {"$defs": {"city": {"type": "string"}}, "type": "object",
              "properties": {"home": {"$ref": "#/$defs/city"}, "tree": {"$ref": "#"},
                             "nested": {"$id": "https://example.com/n.json", "$defs": {"x": {"type": "integer"}},
                                        "properties": {"x": {"$ref": "#/$defs/x"}}}}}
    path = tmp_path / "s.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(schema).encode())  # a byte-order mark, as Windows editors write
    assert load_schema(path) == schema
    with pytest.raises(ConfigError, match="the schema is true"):
        check_schema(True)


def test_bounded_gives_free_strings_and_arrays_a_bound_and_keeps_data_as_is() -> None:
    schema = {"type": "object", "properties": {
        "name": {"type": "string"}, "code": {"type": "string", "maxLength": 3},
        "id": {"type": "string", "pattern": "x"},
        "long": {"type": "string", "minLength": 1000}, "kind": {"type": "string", "enum": ["a", "b"]},
        "tags": {"type": "array", "items": {"type": "string"}}, "note": {"type": ["string", "null"]},
        "fixed": {"const": {"type": "string"}}}}
    out = bounded(schema)
    props = out["properties"]
    assert props["name"]["maxLength"] == MAX_STRING_CHARS and props["code"]["maxLength"] == 3
    assert "maxLength" not in props["id"] and "maxLength" not in props["kind"]
    assert props["long"]["maxLength"] == 1000  # never below minLength
    assert props["tags"] == {"type": "array", "items": {"type": "string", "maxLength": MAX_STRING_CHARS},
                             "maxItems": MAX_ITEMS}
    assert props["note"] == {"anyOf": [{"type": "string", "maxLength": MAX_STRING_CHARS}, {"type": "null"}]}
    assert props["fixed"] == {"const": {"type": "string"}} and schema["properties"]["name"] == {"type": "string"}


def test_max_reply_chars_bounds_what_the_grammar_allows() -> None:
    # '"' + 5 characters + '"' + one space: 8; an object adds "{ ", '"a" : ', ", " and "} " around it: 8 + 12
    assert max_reply_chars({"type": "string", "maxLength": 5}) == 8
    assert max_reply_chars({"type": "object", "properties": {"a": {"type": "string", "maxLength": 5}}}) == 20
    assert max_reply_chars({"type": "object", "properties": {"a": {"type": "string"}}}) is None  # unbounded string
    assert max_reply_chars({"type": "object", "properties": {}, "additionalProperties": True}) is None
    assert max_reply_chars({"type": "object"}) is None and max_reply_chars({"$ref": "#"}) is None
    assert max_reply_chars({"anyOf": [{"type": "integer"}, {"enum": ["abc", None]}]}) == 18
    assert max_reply_chars({"$defs": {"d": {"type": "boolean"}}, "type": "array", "items": {"$ref": "#/$defs/d"},
                            "maxItems": 3}) == 4 + 3 * (6 + 2)


def test_a_schema_llama_cpp_cannot_convert_is_refused_not_loosened() -> None:
    pytest.importorskip("llama_cpp")
    from onecard.llm.llamacpp import grammar

    assert "root ::=" in grammar({"type": "object", "properties": {"a": {"type": "integer"}}})._grammar
    # a raw newline inside a string is not JSON: the string character excludes control characters, as llama.cpp's
    # own converter does (llama-cpp-python's let SmolLM2 end a title with one)
    rules = dict(line.split(" ::= ", 1) for line in grammar({"type": "string"})._grammar.splitlines())
    assert rules["char"].startswith(r'[^"\\\x7F\x00-\x1F] |')
    with pytest.raises(UnsupportedError, match="cannot turn this JSON schema into a grammar"):
        grammar({"$ref": "https://example.com/schema.json"})

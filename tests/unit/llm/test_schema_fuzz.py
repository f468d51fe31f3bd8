"""The schema loader under random input: every file is either a usable schema or an OnecardError, never a traceback.

JSON values are drawn with keys and strings that JSON Schema gives meaning to (`type`, `$ref`, `$schema`, `maxLength`
...), so that most draws reach the metaschema check, the reference check and the grammar bounds, not only the parser.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from onecard.core.errors import OnecardError
from onecard.llm.schema import bounded, load_schema, max_reply_chars

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

KEYWORDS = ["type", "properties", "items", "prefixItems", "required", "additionalProperties", "$ref", "$defs",
            "definitions", "$id", "$anchor", "$schema", "enum", "const", "anyOf", "oneOf", "allOf", "not", "pattern",
            "format", "minLength", "maxLength", "minItems", "maxItems", "minimum", "default"]
WORDS = ["string", "object", "array", "integer", "number", "boolean", "null", "#", "#/$defs/a", "#/properties/a",
         "#/items/0", "#/a~1b", "#foo", "a", "other.json#/a", "https://json-schema.org/draft/2020-12/schema",
         "http://json-schema.org/draft-07/schema#", "https://example.com/s.json", "date-time", "uuid", "^a+$", "("]

SCALARS = (st.none() | st.booleans() | st.integers(-3, 300) | st.floats(allow_nan=False)
           | st.sampled_from(WORDS) | st.text(max_size=8))
KEYS = st.sampled_from(KEYWORDS) | st.text(max_size=6)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
                      max_leaves=25)
SCHEMAS = st.dictionaries(KEYS, VALUES, max_size=6) | VALUES  # mostly objects, as schemas are
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load(content: bytes) -> dict[str, Any] | None:
    """The loaded schema (with its grammar bounds computed, as `chat` does), or None for an OnecardError."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "schema.json"
        path.write_bytes(content)
        try:
            schema = load_schema(path)
        except OnecardError as e:
            assert str(path) in str(e)  # the error names the file
            return None
    max_reply_chars(bounded(schema))
    return schema


@FUZZ
@given(SCHEMAS)
def test_any_json_value_loads_or_is_a_named_error(value: Any) -> None:
    content = json.dumps(value).encode()
    schema = _load(content)
    assert schema is None or schema == json.loads(content)


@FUZZ
@given(st.binary(max_size=200) | SCHEMAS.map(lambda v: json.dumps(v).encode()[:-1] + b"\xff"))
def test_any_bytes_load_or_are_a_named_error(content: bytes) -> None:
    _load(content)

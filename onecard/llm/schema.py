"""JSON-schema output: read the schema file, and check each reply against it, with an error that says where."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from onecard.core.errors import ConfigError
from onecard.llm.base import InvalidOutputError

__all__ = ["load_schema", "validate"]


def load_schema(path: Path) -> dict[str, Any]:
    """The schema in `path`, checked to be a valid JSON Schema."""
    from onecard.core.extras import require

    jsonschema = require("jsonschema", "llm")
    if not path.is_file():
        raise ConfigError(f"JSON schema file {path} does not exist", "pass the path of a .json file to --json-schema")
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}: not valid JSON ({e.msg})", "fix the JSON syntax of the schema") from None
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        raise ConfigError(f"{path}: not a valid JSON Schema: {e.message}",
                          "see https://json-schema.org/understanding-json-schema") from None
    return dict(schema)


def validate(text: str, schema: dict[str, Any]) -> Any:
    """The reply parsed as JSON, or InvalidOutputError saying where it breaks the schema."""
    from onecard.core.extras import require

    jsonschema = require("jsonschema", "llm")
    shown = text if len(text) <= 300 else text[:300] + "..."
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidOutputError(f"the reply is not valid JSON ({e.msg}: character {e.pos}): {shown}",
                                 "raise --max-tokens if the reply was cut off") from None
    errors = sorted(jsonschema.validators.validator_for(schema)(schema).iter_errors(value), key=lambda e: e.path)
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(top level)"
        raise InvalidOutputError(f"the reply does not match the JSON schema at {where}: {errors[0].message}: {shown}",
                                 "raise --max-tokens if the reply was cut off; otherwise the backend did not "
                                 "constrain its output (llamacpp always does)")
    return value

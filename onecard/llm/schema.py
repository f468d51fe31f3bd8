"""JSON-schema output: read and check the schema, bound it for a grammar, and check each reply against it.

A schema is checked whole before any generation: an object, of a known dialect, valid against its metaschema, every
`$ref` resolvable. llama.cpp's grammar honours `maxLength` and `maxItems`, so `bounded` gives each string and array
that has none a default bound: a small model that rambles inside a string stops at the bound instead of running into
the token limit with the JSON unfinished. `max_reply_chars` is the longest reply such a grammar allows; it sizes the
token budget.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from onecard.core.errors import ConfigError
from onecard.llm.errors import InvalidOutputError

__all__ = ["load_schema", "check_schema", "validate", "bounded", "max_reply_chars", "MAX_STRING_CHARS", "MAX_ITEMS"]

# Default bounds for strings and arrays whose schema sets none: a paragraph, and a short list. A reply schema that
# needs more says so with maxLength / maxItems.
MAX_STRING_CHARS = 256
MAX_ITEMS = 10
_VALUES = ("const", "enum", "default", "examples")  # keywords whose values are data, not subschemas
_FIX = "see https://json-schema.org/understanding-json-schema"


def load_schema(path: Path) -> dict[str, Any]:
    """The schema in `path`, checked by `check_schema`; a ConfigError names the file and the problem."""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"JSON schema file {path} {what}", "pass the path of a .json file to --json-schema")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start} is {e.object[e.start:e.start + 1]!r})",
                          "save the schema as UTF-8 JSON") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror})", "check the file's permissions") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}: not valid JSON ({e.msg})", "fix the JSON syntax of the schema") from None
    except (ValueError, RecursionError) as e:  # an integer of over 4300 digits; nesting deeper than Python's stack
        raise ConfigError(f"{path}: not usable JSON ({e})", "fix the JSON of the schema") from None
    return check_schema(value, str(path))


def check_schema(schema: Any, where: str = "the JSON schema") -> dict[str, Any]:
    """`schema` if it is an object, of a known dialect, valid against its metaschema, with every `$ref` resolvable.

    Raises:
        ConfigError: naming `where` (the file) and the problem.
    """
    from onecard.core.extras import require

    jsonschema = require("jsonschema", "llm")
    if not isinstance(schema, dict):
        shown = json.dumps(schema)
        raise ConfigError(f"{where}: the schema is {shown[:60]}{'...' if len(shown) > 60 else ''}, not an object",
                          'describe the reply as an object, e.g. {"type": "object", "properties": {"city": '
                          '{"type": "string"}}, "required": ["city"]}')
    spec = _dialect(schema, where)
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as e:
        at = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ConfigError(f"{where}: not a valid JSON Schema at {at}: {_short(e.message)}", _FIX) from None
    except RecursionError:
        raise ConfigError(f"{where}: the schema is nested too deeply to check", "flatten it with $defs") from None
    _check_refs(schema, spec, where)
    return schema


def _dialect(schema: dict[str, Any], where: str) -> Any:
    """The referencing specification `$schema` names (2020-12 when it names none)."""
    from referencing.jsonschema import DRAFT202012, UnknownDialect, specification_with

    dialect = schema.get("$schema")
    if dialect is None:
        return DRAFT202012
    if isinstance(dialect, str):
        try:
            return specification_with(dialect)
        except UnknownDialect:
            pass
    raise ConfigError(f"{where}: unknown $schema {_short(json.dumps(dialect))}",
                      "name a JSON Schema draft, e.g. https://json-schema.org/draft/2020-12/schema, or leave "
                      "$schema out")


def _check_refs(schema: dict[str, Any], spec: Any, where: str) -> None:
    """Raise when a `$ref` points to nothing: jsonschema would only find out while validating a reply."""
    from referencing import Registry
    from referencing.exceptions import Unresolvable

    def walk(node: Any, resolver: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, resolver)
        elif isinstance(node, dict):
            if isinstance(node.get("$id"), str):
                resolver = resolver.in_subresource(spec.create_resource(node))
            ref = node.get("$ref")
            if isinstance(ref, str):
                try:
                    resolver.lookup(ref)
                except (Unresolvable, ValueError) as e:  # ValueError: a pointer segment that is not a list index
                    raise ConfigError(f"{where}: $ref {ref!r} points to nothing ({type(e).__name__})",
                                      "define it in the schema, e.g. under $defs, and refer to it as "
                                      "#/$defs/NAME (remote schemas are not fetched)") from None
            for value in node.values():
                walk(value, resolver)

    walk(schema, Registry().resolver_with_root(spec.create_resource(schema)))


def validate(text: str, schema: dict[str, Any]) -> Any:
    """The reply parsed as JSON, or InvalidOutputError saying where it breaks the schema."""
    from onecard.core.extras import require

    jsonschema = require("jsonschema", "llm")
    shown = _short(text)
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


def bounded(schema: Any) -> Any:
    """`schema` with a `maxLength` on each string and a `maxItems` on each array that has none.

    A list of types becomes an `anyOf` of one type each, which llama.cpp's converter bounds (it drops the length of
    a string in a type list). The result accepts a subset of what `schema` accepts.
    """
    if isinstance(schema, list):
        return [bounded(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: v if k in _VALUES else bounded(v) for k, v in schema.items()}
    kind = out.get("type")
    if isinstance(kind, list) and not {"anyOf", "oneOf"} & out.keys():
        return {"anyOf": [bounded({**schema, "type": t}) for t in kind]}
    if kind == "string" and not {"maxLength", "pattern", "enum", "const"} & out.keys():
        out["maxLength"] = max(MAX_STRING_CHARS, out.get("minLength", 0))
    if kind == "array" and isinstance(out.get("items"), dict) and "maxItems" not in out:
        out["maxItems"] = max(MAX_ITEMS, out.get("minItems", 0))
    return out


# The longest text llama-cpp-python's SchemaConverter (llama_cpp/llama_grammar.py) writes for each piece: after each
# value at most one space (`space ::= " "?`), at most 16 digits in each part of a number.
_PRIMITIVE_CHARS = {"number": 53, "integer": 18, "boolean": 6, "null": 5}
_FORMAT_CHARS = {"date": 13, "time": 21, "date-time": 32, "uuid": 39}


def max_reply_chars(schema: dict[str, Any]) -> int | None:
    """The longest reply, in characters, that llama.cpp's grammar for `schema` allows; None when it has no bound.

    A token holds at least one character, so this many tokens hold any reply written without escapes (`\\u00e9`) or
    characters split over several tokens; such rare replies end in the cut-off error instead.
    """
    return _chars(schema, schema, frozenset())


def _chars(node: Any, root: dict[str, Any], seen: frozenset[str]) -> int | None:
    """Follows the order of SchemaConverter.visit: $ref, anyOf/oneOf, const, enum, object, array, string, primitive."""
    if not isinstance(node, dict):
        return None
    ref = node.get("$ref")
    if ref is not None:
        target: Any = root
        if not isinstance(ref, str) or not ref.startswith("#/") or ref in seen:
            return None  # remote, or recursive: no bound
        for part in ref[2:].split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, dict) else None
        return _chars(target, root, seen | {ref})
    branches = node.get("anyOf") or node.get("oneOf")
    if branches:
        return _most([_chars(b, root, seen) for b in branches])
    kind = node.get("type")
    if isinstance(kind, list):
        return None
    if "const" in node:
        return len(json.dumps(node["const"])) + 1
    if "enum" in node:
        return max((len(json.dumps(v)) + 1 for v in node["enum"]), default=None)
    if kind in (None, "object") and "properties" in node:
        if node.get("additionalProperties") not in (None, False):
            return None
        # "{" space, then per property: "key" space ":" space value "," space, then "}" space
        sizes = [_chars(s, root, seen) for s in node["properties"].values()]
        return None if None in sizes else 4 + sum(len(json.dumps(k)) + 5 + (s or 0)
                                                  for k, s in zip(node["properties"], sizes, strict=True))
    if kind in (None, "array") and isinstance(node.get("items"), list):
        sizes = [_chars(s, root, seen) for s in node["items"]]
        return None if None in sizes else 4 + sum((s or 0) + 2 for s in sizes)
    if kind in (None, "array") and "items" in node:
        item = _chars(node["items"], root, seen)
        return None if item is None or "maxItems" not in node else 4 + node["maxItems"] * (item + 2)
    if kind == "string" and "pattern" not in node:
        if node.get("format") in _FORMAT_CHARS:
            return _FORMAT_CHARS[node["format"]]
        return int(node["maxLength"]) + 3 if "maxLength" in node else None
    return _PRIMITIVE_CHARS.get(kind) if isinstance(kind, str) else None


def _most(sizes: list[int | None]) -> int | None:
    return None if not sizes or None in sizes else max(s or 0 for s in sizes)


def _short(text: str, most: int = 300) -> str:
    return text if len(text) <= most else text[:most] + "..."

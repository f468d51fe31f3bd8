"""A form from a job's pydantic config: one field per config key, with its type, default, choices and description.

The page draws the form from this; the same model validates what the form sends, as it validates the CLI's flags.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

__all__ = ["form_schema"]


def form_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`{"title", "description", "fields": [{name, type, choices, nullable, required, default, description}]}`.

    `type` is the input to draw: string, integer, number, boolean, array (one value per line) or choice (a select);
    `choices` are the fixed values a field also takes (`"auto"` beside a number), `nullable` whether it takes None.
    """
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    fields = []
    for name, prop in schema["properties"].items():
        options = [_resolve(o, schema) for o in prop.get("anyOf", [prop])]
        types = [o["type"] for o in options if o.get("type") not in (None, "null") and "enum" not in o]
        choices = [v for o in options for v in o.get("enum", [o["const"]] if "const" in o else [])]
        if not types and all(isinstance(c, bool) for c in choices):
            types = ["boolean"]
        fields.append({
            "name": name,
            "type": types[0] if types else "choice",
            "choices": choices,
            "nullable": any(o.get("type") == "null" for o in options),
            "required": name in required,
            "default": prop.get("default"),
            "description": prop.get("description", ""),
        })
    return {"title": model.__name__, "description": (model.__doc__ or "").strip(), "fields": fields}


def _resolve(option: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow a `$ref` to its definition (a Literal alias shared by several configs)."""
    ref = option.get("$ref")
    if ref is None:
        return option
    return dict(schema.get("$defs", {}).get(ref.rsplit("/", 1)[-1], {}))

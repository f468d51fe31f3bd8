"""Job configs: one pydantic model per job; defaults < YAML file < command-line flags.

The same model validates the YAML file, the CLI flags and the web API body, and is saved, resolved, with every run.
Unknown keys and wrong types are errors that name the key (and the closest valid one).
"""

from __future__ import annotations

import argparse
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError

from onecard.core.errors import ConfigError

__all__ = ["load_config", "add_config_flags", "config_from_args", "explicit_fields", "dump_config"]

M = TypeVar("M", bound=BaseModel)


def load_config(model: type[M], file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> M:
    """Build `model` from its defaults, then a YAML file, then overrides (flags), validating each key.

    Args:
        model: the job's pydantic config class.
        file: a YAML file whose top-level keys are fields of `model`.
        overrides: values from flags; they win over the file.
    """
    values: dict[str, Any] = {}
    source = "flags"
    if file is not None:
        values.update(_read_yaml(Path(file)))
        source = str(file)
    _check_keys(model, values, source)
    _check_keys(model, overrides or {}, "flags")
    values.update(overrides or {})
    try:
        return model.model_validate(values)
    except ValidationError as e:
        raise ConfigError(_describe(e, source), "see `--help` for the valid values of each key") from None


def dump_config(config: BaseModel) -> dict[str, Any]:
    """The resolved config as plain JSON-able data, as saved in run records and printed by --print-config."""
    return config.model_dump(mode="json")


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        what = "is a folder, not a YAML file" if path.is_dir() else "does not exist"
        raise ConfigError(f"config file {path} {what}", "pass the path of an existing YAML file to --config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {e.start} is {e.object[e.start:e.start + 1]!r})",
                          "save the config file as UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})", "fix the YAML syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def _check_keys(model: type[BaseModel], values: dict[str, Any], source: str) -> None:
    fields = list(model.model_fields)
    for key in values:
        if key not in model.model_fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(fields)}"
            raise ConfigError(f"{source}: unknown config key '{key}' for {model.__name__}", hint)


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for err in error.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(config)"
        value = err.get("input")
        got = f" (got {value!r})" if not isinstance(value, dict) else ""
        lines.append(f"{source}: key '{key}': {err['msg']}{got}")
    return "\n".join(lines)


# -- flags generated from the model -------------------------------------------------------------------------------


def add_config_flags(parser: argparse.ArgumentParser, model: type[BaseModel], positional: tuple[str, ...] = ()) -> None:
    """Add one flag per field of `model` (`lora_rank` -> `--lora-rank`); booleans get `--x/--no-x`.

    Flags default to "not given" so that only what the user typed overrides the file. Fields named in
    `positional` become optional positional arguments.
    """
    for name, info in model.model_fields.items():
        help_text = info.description or ""
        if info.default is not None and not isinstance(info.default, BaseModel) and info.is_required() is False:
            help_text += f" (default: {info.default})"
        choices = _choices(info.annotation)
        if choices:
            help_text += f" [{'|'.join(map(str, choices))}]"
        if name in positional:
            parser.add_argument(name, nargs="?", default=argparse.SUPPRESS, help=help_text)
        elif _is_bool(info.annotation):
            parser.add_argument(
                "--" + name.replace("_", "-"), dest=name, action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS, help=help_text,
            )
        else:
            nargs = "+" if _is_list(info.annotation) else None
            parser.add_argument(
                "--" + name.replace("_", "-"), dest=name, default=argparse.SUPPRESS, nargs=nargs, help=help_text,
                metavar=name.upper(),
            )


def config_from_args(model: type[M], args: argparse.Namespace) -> M:
    """Build the config from `--config FILE` (if the parser has it) and the flags the user typed."""
    return load_config(model, getattr(args, "config", None), explicit_fields(model, args))


def explicit_fields(model: type[BaseModel], args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the user set on the command line (strings: pydantic converts them)."""
    values = {k: v for k, v in vars(args).items() if k in model.model_fields}
    for k, v in values.items():
        if isinstance(v, str) and v.lower() in ("none", "null") and _is_optional(model.model_fields[k].annotation):
            values[k] = None
    return values


def _args_of(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _is_bool(annotation: Any) -> bool:
    return bool in _args_of(annotation)


def _is_optional(annotation: Any) -> bool:
    return type(None) in _args_of(annotation)


def _is_list(annotation: Any) -> bool:
    return any(get_origin(a) in (list, tuple) for a in _args_of(annotation))


def _choices(annotation: Any) -> list[Any]:
    out: list[Any] = []
    for a in _args_of(annotation):
        if get_origin(a) is Literal:
            out.extend(get_args(a))
    return out

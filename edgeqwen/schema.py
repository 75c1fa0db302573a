"""Strict loading of TOML files into frozen dataclasses.

Target profiles and recipes are data. This module turns a TOML table into a
typed, frozen dataclass and rejects anything it does not understand: unknown
keys, wrong types, values outside a Literal's choices. It reports every
problem in the file at once, each with the file and the dotted key, so a user
fixes a profile in one pass instead of one error per run.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from edgeqwen.errors import EdgeqwenError

T = TypeVar("T")


def read_toml(path: Path, error_cls: type[EdgeqwenError]) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise error_cls(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise error_cls(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise error_cls(f"{path}: not UTF-8 text (byte {e.start}); TOML files are UTF-8") from None


def from_dict(cls: type[T], data: Any, *, path: Path, error_cls: type[EdgeqwenError]) -> T:
    """Build `cls` from `data`, raising one `error_cls` that lists every problem found."""
    problems: list[str] = []
    value = _convert(cls, data, "", problems)
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise error_cls(f"{path}: {len(problems)} problem(s):\n{listing}")
    return value


def describe_type(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in get_args(tp) if a is not type(None))
    if origin is tuple:
        return f"list of {describe_type(get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "table"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, key: str, problems: list[str]) -> Any:
    label = key or "(top level)"
    if tp is Any:  # a section another schema reads (a plan's engine_options: its backend's type)
        return value
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, key, problems)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(options[0], value, key, problems)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices or type(value) is not type(choices[0]):
            problems.append(f"{label} = {value!r}: expected one of {describe_type(tp)}")
        return value
    if origin is tuple:
        item_type = get_args(tp)[0]
        if not isinstance(value, list):
            problems.append(f"{label} = {value!r}: expected a {describe_type(tp)}")
            return ()
        return tuple(_convert(item_type, v, f"{key}[{i}]", problems) for i, v in enumerate(value))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append(f"{label} = {value!r}: expected a finite number")
            return 0.0
        return float(value)
    if tp in (int, str, bool):
        if type(value) is not tp:
            problems.append(f"{label} = {value!r}: expected {describe_type(tp)}")
        return value
    raise TypeError(f"schema type {tp!r} at {label} is not supported")  # a bug in edgeqwen, not user input


def _convert_dataclass(cls: Any, value: Any, key: str, problems: list[str]) -> Any:
    label = key or "(top level)"
    if not isinstance(value, dict):
        problems.append(f"{label}: expected a table, got {value!r}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("internal")}
    for unknown in sorted(set(value) - set(fields)):
        where = f"{key}.{unknown}" if key else unknown
        problems.append(f"{where}: unknown key (accepted here: {', '.join(sorted(fields))})")
    problems_before = len(problems)
    kwargs = {}
    for name, field in fields.items():
        where = f"{key}.{name}" if key else name
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], where, problems)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            problems.append(f"{where}: missing (expected {describe_type(hints[name])})")
    if len(problems) > problems_before:
        return None  # already reported; range checks on broken values would only add noise
    try:
        return cls(**kwargs)
    except ValueError as e:  # range and consistency checks in __post_init__
        problems.append(f"{label}: {e}")
        return None


def load_named(cls: type[T], directory: Path, name: str, kind: str, error_cls: type[EdgeqwenError]) -> T:
    """Load `directory/<name>.toml` as `cls` (which has `name` and an internal `path` field)."""
    path = directory / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in directory.glob("*.toml"))) or "(none)"
        raise error_cls(f"unknown {kind} {name!r}: no {path}. Known {kind}s: {known}")
    return load_file(cls, path, error_cls)


def load_file(cls: type[T], path: Path, error_cls: type[EdgeqwenError]) -> T:
    loaded = from_dict(cls, read_toml(path, error_cls), path=path, error_cls=error_cls)
    if loaded.name != path.stem:
        raise error_cls(f"{path}: name = {loaded.name!r} must match the file name {path.stem!r}")
    return dataclasses.replace(loaded, path=path)


def to_dict(obj: Any) -> Any:
    """A dataclass as plain JSON-compatible data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {
            f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if not f.metadata.get("internal")
        }
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj

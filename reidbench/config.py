"""Typed dataclass <-> plain-data conversion with type checking and dotted-key overrides.

Small on purpose: supports the field types the protocol uses (bool, int, float, str, None unions,
Literal, list[X], dict[str, X], Any and nested dataclasses).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from reidbench.errors import UserError


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, checking keys and types; errors name the dotted key."""
    if not isinstance(data, dict):
        raise UserError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise UserError(
            f"unknown key {_join(where, unknown[0])!r}. Valid keys{' under ' + where if where else ''}: "
            f"{', '.join(names)}."
        )
    kwargs = {name: _coerce(hints[name], data[name], _join(where, name)) for name in names if name in data}
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Plain-data (YAML/JSON-able) copy of a dataclass tree."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    return obj


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b.c=value``; the value is read as YAML (``3e-4``, ``[1, 2]``, ``true``, ``null``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"override {text!r} is not of the form key=value (for example optim.lr=3e-4)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise UserError(
            f"override {text!r}: the value {raw!r} is not valid YAML: {yaml_problem(exc, lines=False)}. "
            f"Write lists as [a, b] and mappings as {{k: v}}, quoting the whole --set for the shell"
        ) from None
    return key.strip(), value


# YAML parser wording -> plain words
_TOKENS = {
    "'<stream end>'": "the end of the text",
    "end of stream": "the end of the text",
    "<block end>": "the end of an indented block (check the indentation)",
    "'<block mapping start>'": "a key indented differently",
    "'<block sequence start>'": "a list item indented differently",
}
_CONTEXTS = {
    "flow sequence": "the [...] list",
    "flow mapping": "the {...} mapping",
    "block mapping": "the mapping",
    "block sequence": "the list",
    "quoted scalar": "the quoted string",
}


def yaml_problem(exc: yaml.YAMLError, lines: bool = True) -> str:
    """A YAML syntax error in plain words: where (line and column, or column only), what was expected."""

    def at(mark: Any) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}" if lines else f"column {mark.column + 1}"

    problem = getattr(exc, "problem", None) or str(exc)
    for token, words in _TOKENS.items():
        problem = problem.replace(token, words)
    mark = getattr(exc, "problem_mark", None)
    text = f"{at(mark)}: {problem}" if mark is not None else problem
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None:
        what = next((w for k, w in _CONTEXTS.items() if k in context), "the part")
        text += f" (in {what} that starts at {at(start)})"
    return text


def apply_override(data: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` in nested plain ``data`` (list items by index: ``stages.0.lr``)."""
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        node = _child(node, part, ".".join(parts[: i + 1]))
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, key)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise UserError(f"cannot set {key!r}: {'.'.join(parts[:-1])!r} is a value, not a section")


def _child(node: Any, part: str, where: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, where)]
    if isinstance(node, dict):
        if part not in node or node[part] is None:
            node[part] = {}
        return node[part]
    raise UserError(f"cannot descend into {where!r}: it is a value, not a section")


def _index(node: list, part: str, where: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise UserError(f"{where!r}: expected a list index below {len(node)}, got {part!r}")
    return int(part)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0])
    if origin is Literal:
        if value not in args:
            raise UserError(f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise UserError(f"{where}: expected a list, got {value!r}")
        return [_coerce(args[0], v, f"{where}.{i}") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    return _scalar(tp, value, where)


def _scalar(tp: type, value: Any, where: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "3e-4" as a string
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"unsupported config type {tp!r} at {where}")
    raise UserError(f"{where}: expected {tp.__name__}, got {value!r}")

"""Structural checks derived from ``dsl.schema``: keys, types, enum values, patterns, ranges.

:func:`check` walks a document against a spec and reports every mismatch; it never stops at
the first one and never raises on malformed data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

from magicflow.dsl.durations import DurationError, parse_duration
from magicflow.dsl.report import Reporter
from magicflow.dsl.source import Path
from magicflow.dsl.spec import (
    Boolean,
    Choice,
    Duration,
    Either,
    Expression,
    Integer,
    JsonSchemaDoc,
    ListOf,
    Number,
    Record,
    ScalarMap,
    Spec,
    Template,
    Text,
)
from magicflow.dsl.text import clip, describe, did_you_mean, one_of, suggest

__all__ = ["check", "field_name"]

_SCALARS = (str, int, float, bool, type(None))


def check(value: Any, spec: Spec, path: Path, rep: Reporter) -> None:
    """Report every way ``value`` (at ``path``) does not match ``spec``."""
    _CHECKS[type(spec)](value, spec, path, rep)


def field_name(path: Path) -> str:
    """How a message names the value at ``path``: ``'timeout'``, ``'depends_on' entries``."""
    for index in range(len(path) - 1, -1, -1):
        part = path[index]
        if isinstance(part, str):
            return f"'{part}'" if index == len(path) - 1 else f"'{part}' entries"
    return "the document"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any, spec: Any, path: Path, rep: Reporter) -> None:
    if not isinstance(value, str):
        message = f"{field_name(path)} must be a string, not {describe(value)}"
        raw = rep.raw(path)
        if raw is not None and isinstance(path[-1], str):
            message += f'; quote it: {path[-1]}: "{raw}"'
        rep.at(path, message)
    elif not value.strip():
        rep.at(path, f"{field_name(path)} must not be empty")
    elif spec.pattern and _regex(spec.pattern).match(value) is None:
        rep.at(path, f"invalid {field_name(path)} {clip(value)}: use {spec.hint}")


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _choice(value: Any, spec: Any, path: Path, rep: Reporter) -> None:
    if value in spec.values and isinstance(value, str):
        return
    expected = one_of(spec.values)
    if isinstance(value, str):
        hint = did_you_mean(value, spec.values)
        rep.at(path, f"invalid {field_name(path)} {clip(value)}: expected {expected}{hint}")
    else:
        rep.at(path, f"{field_name(path)} must be {expected}, not {describe(value)}")


def _integer(value: Any, spec: Any, path: Path, rep: Reporter) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        rep.at(path, f"{field_name(path)} must be a whole number, not {describe(value)}")
    elif spec.minimum is not None and value < spec.minimum:
        rep.at(path, f"{field_name(path)} must be at least {spec.minimum}, got {value}")


def _number(value: Any, spec: Any, path: Path, rep: Reporter) -> None:
    if not _is_number(value):
        rep.at(path, f"{field_name(path)} must be a number, not {describe(value)}")
    elif spec.minimum is not None and value < spec.minimum:
        rep.at(path, f"{field_name(path)} must be at least {spec.minimum:g}, got {value:g}")


def _boolean(value: Any, spec: Any, path: Path, rep: Reporter) -> None:
    if not isinstance(value, bool):
        rep.at(path, f"{field_name(path)} must be true or false, not {describe(value)}")


def _duration(value: Any, spec: Any, path: Path, rep: Reporter) -> None:
    try:
        parse_duration(value)
    except DurationError as exc:
        rep.at(path, f"{field_name(path)}: {exc}")


def _expression(value: Any, spec: Any, path: Path, rep: Reporter) -> None:
    if not isinstance(value, str) or not value.strip():
        rep.at(path, f"{field_name(path)} must be an expression like ${{input.flag}}")


def _anything(value: Any, spec: Any, path: Path, rep: Reporter) -> None:
    return  # the loader only produces JSON-compatible data


def _scalar_map(value: Any, spec: Any, path: Path, rep: Reporter) -> None:
    if not isinstance(value, dict):
        rep.at(path, f"{field_name(path)} must be a mapping, not {describe(value)}")
        return
    for key, item in value.items():
        if not isinstance(item, _SCALARS):
            message = f"{field_name(path)} values must be strings, numbers, booleans or null"
            rep.at((*path, key), f"{message}, not {describe(item)}")


def _mapping(value: Any, spec: Any, path: Path, rep: Reporter) -> None:
    if not isinstance(value, dict):
        rep.at(path, f"{field_name(path)} must be a mapping, not {describe(value)}")


def _list(value: Any, spec: Any, path: Path, rep: Reporter) -> None:
    if not isinstance(value, list):
        message = f"{field_name(path)} must be a list, not {describe(value)}"
        if isinstance(value, str) and isinstance(spec.item, Text):
            message += f" (write [{value}])"
        rep.at(path, message)
        return
    if spec.min_items and len(value) < spec.min_items:
        rep.at(path, f"{field_name(path)} must not be empty")
    seen: set[Any] = set()
    for index, item in enumerate(value):
        check(item, spec.item, (*path, index), rep)
        if spec.unique and isinstance(item, _SCALARS):
            if item in seen:
                rep.at((*path, index), f"duplicate entry {item!r} in {field_name(path)}")
            seen.add(item)


def _record(value: Any, spec: Any, path: Path, rep: Reporter) -> None:
    if not isinstance(value, dict):
        rep.at(path, f"{field_name(path)} must be a mapping, not {describe(value)}")
        return
    record: Record = spec
    fields = _fields(record)
    for key, item in value.items():
        field = fields.get(key)
        if field is None:
            rep.at_key((*path, key), f"unknown key {key!r}{_key_hint(key, record)}")
        else:
            check(item, field.spec, (*path, key), rep)
    for field in record.fields:
        if field.required and field.name not in value:
            rep.at(path, f"missing required key {field.name!r}")
    if record.exactly_one:
        _exactly_one(value, record, path, rep)
    for key, other in record.requires:
        if key in value and other not in value:
            rep.at_key((*path, key), f"{key!r} needs {other!r}")


_FIELDS: dict[int, dict[str, Any]] = {}


def _fields(record: Record) -> dict[str, Any]:
    """The record's fields by name (by identity: hashing a record would walk all of it)."""
    found = _FIELDS.get(id(record))
    if found is None:
        found = _FIELDS[id(record)] = {f.name: f for f in record.fields}
    return found


def _key_hint(key: str, record: Record) -> str:
    close = suggest(key, record.names)
    if close is not None:
        return f" (did you mean {close!r}?)"
    for field in record.fields:
        nested = field.spec
        if isinstance(nested, Either):
            nested = next((o for o in nested.options if isinstance(o, Record)), nested)
        if isinstance(nested, Record) and key in nested.names:
            return f" (it belongs under {field.name!r})"
    return ""


def _exactly_one(value: dict[str, Any], record: Record, path: Path, rep: Reporter) -> None:
    present = [name for name in record.exactly_one if name in value]
    if len(present) == 1:
        return
    choices = one_of(record.exactly_one)
    if not present:
        fields = _fields(record)
        typos = [key for key in value if key not in fields and suggest(key, record.exactly_one)]
        if not typos:  # else "unknown key 'functon' (did you mean 'function'?)" says it all
            rep.at(path, f"a {record.name} needs one of {choices}")
    for extra in present[1:]:
        message = f"{extra!r} cannot be combined with {present[0]!r}: a {record.name} has"
        rep.at_key((*path, extra), f"{message} exactly one of {choices}")


_JSON_TYPES: dict[type, tuple[type, ...]] = {
    Record: (dict,),
    ScalarMap: (dict,),
    JsonSchemaDoc: (dict,),
    ListOf: (list,),
    Text: (str,),
    Choice: (str,),
    Expression: (str,),
    Boolean: (bool,),
    Integer: (int,),
    Number: (int, float),
    Duration: (str, int, float),
}


def _either(value: Any, spec: Any, path: Path, rep: Reporter) -> None:
    for option in spec.options:
        kinds = _JSON_TYPES.get(type(option), ())
        if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds):
            check(value, option, path, rep)
            return
    names = sorted({_KIND_NAMES[t] for o in spec.options for t in _JSON_TYPES[type(o)]})
    expected = " or ".join(names)
    rep.at(path, f"{field_name(path)} must be {expected}, not {describe(value)}")


_KIND_NAMES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
}

_CHECKS: dict[type, Callable[[Any, Any, Path, Reporter], None]] = {
    Text: _text,
    Choice: _choice,
    Integer: _integer,
    Number: _number,
    Boolean: _boolean,
    Duration: _duration,
    Expression: _expression,
    Template: _anything,
    ScalarMap: _scalar_map,
    JsonSchemaDoc: _mapping,
    ListOf: _list,
    Record: _record,
    Either: _either,
}

"""The building blocks of the language description in ``dsl.schema``: kinds of values.

Immutable records. NamedTuple rather than frozen dataclasses: the CLI imports these on every
start, and fourteen dataclasses cost ~20 ms of class creation there.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = [
    "Boolean",
    "Choice",
    "Duration",
    "Either",
    "Expression",
    "Field",
    "Integer",
    "JsonSchemaDoc",
    "ListOf",
    "Number",
    "Record",
    "ScalarMap",
    "Spec",
    "Template",
    "Text",
]


class Text(NamedTuple):
    """A string; ``pattern`` (a regular expression) and ``hint`` (its meaning, for messages)."""

    pattern: str | None = None
    hint: str = ""


class Choice(NamedTuple):
    values: tuple[str, ...]


class Integer(NamedTuple):
    minimum: int | None = None


class Number(NamedTuple):
    minimum: float | None = None


class Boolean(NamedTuple):
    """true or false."""


class Duration(NamedTuple):
    """``250ms``, ``5s``, ``1m30s``, ``2h``, ``1d`` or a positive number of seconds."""


class Expression(NamedTuple):
    """A string holding one expression: ``${...}`` or the bare expression."""


class Template(NamedTuple):
    """Any JSON value; strings in it may hold ``${...}`` expressions."""


class ScalarMap(NamedTuple):
    """A mapping of string keys to strings, numbers, booleans or null."""


class JsonSchemaDoc(NamedTuple):
    """A JSON Schema (draft 2020-12) as a mapping."""


class ListOf(NamedTuple):
    item: Spec
    min_items: int = 0
    unique: bool = False


class Field(NamedTuple):
    name: str
    spec: Spec
    doc: str
    required: bool = False
    default: Any = None  # shown in docs and the JSON Schema when not None


class Record(NamedTuple):
    """A mapping with a closed set of keys (unknown keys are errors)."""

    name: str  # the name of its section in docs/yaml-reference.md and of its $defs entry
    doc: str
    fields: tuple[Field, ...]
    exactly_one: tuple[str, ...] = ()  # exactly one of these keys must be present
    requires: tuple[tuple[str, str], ...] = ()  # (key, other): key is only valid with other

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


class Either(NamedTuple):
    """One of several specs of different JSON types (chosen by the value's type)."""

    options: tuple[Spec, ...]


Spec = (
    Text
    | Choice
    | Integer
    | Number
    | Boolean
    | Duration
    | Expression
    | Template
    | ScalarMap
    | JsonSchemaDoc
    | ListOf
    | Record
    | Either
)

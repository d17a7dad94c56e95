"""The expression language of workflow definitions: ``${ ... }`` in ``input``, ``output``,
``condition`` and ``for_each``.

Templates
    A string that is exactly one ``${...}`` keeps the value's type (``"${input.items}"`` is a
    list). Inside a longer string the value is interpolated: strings as they are, numbers with
    ``str()``, ``true``/``false``/``null`` as in JSON, lists and maps as JSON
    (``{"a": 1}``). ``$${`` writes a literal ``${``. Map keys are never templates.

Scope
    ``input``, ``steps.<id>.output``, ``steps.<id>.status``, ``item`` and ``index`` (in a
    ``for_each`` step), ``execution.id``, ``workflow.name``, ``workflow.version``. Step ids are
    written as they are, hyphens included: ``steps.validate-user.output.email``; after
    ``steps.`` the whole run of ``[A-Za-z0-9_-]`` is the step id, so it is never a
    subtraction. Reading a key that is absent, an index out of range, a field of ``null`` or a
    step that has not run is an error, never a silent null: ``default()`` tolerates it.

Syntax
    ``a.b`` and ``a['b']`` read map keys (never Python attributes); ``a[0]`` reads a list
    (negative indexes count from the end). Literals: ``'single'`` or ``"double"`` quoted strings
    (escapes ``\\n \\t \\r \\b \\f \\0 \\/ \\\\ \\' \\" \\uXXXX``), integers, floats,
    ``true``/``false``/``null``, lists ``[1, 2]``, maps ``{'k': v}`` with string keys.
    Operators, loosest first: ``or`` / ``||``; ``and`` / ``&&``; ``not`` / ``!`` (same low
    precedence as ``not``: ``!a == b`` means ``!(a == b)``; write ``a == (!b)``); comparisons
    ``== != < <= > >= in``, ``not in`` (chainable: ``0 < x < 9``); ``+ -``; ``* /``; unary
    ``-``; ``[...]`` and ``.key``. ``and``/``or`` return one of their operands; ``false``,
    ``null``, ``0``, ``''``, ``[]`` and ``{}`` are falsy. Arithmetic is on numbers only
    (``/`` always gives a float), ``+`` also joins two strings or two lists; ``<`` and friends
    compare two numbers or two strings; ``==`` never equates ``true`` with ``1``.
    Functions: ``len(x)``, ``contains(haystack, needle)`` (substring, list item or map key),
    ``starts_with(s, prefix)``, ``ends_with(s, suffix)``, ``lower(s)``, ``upper(s)``,
    ``default(x, fallback)``: the fallback when ``x`` is null or when reading it fails
    because something is missing.

Anything else — attribute access, ``**``, ``%``, comprehensions, lambdas, conditional
expressions, other calls, names beginning with ``__`` — is rejected when the workflow is
compiled, with a column and a did-you-mean hint. Compiled objects are immutable and shared
between threads; evaluation never uses Python ``eval``: pure paths are read directly, the rest
by a restricted simpleeval evaluator on the tree parsed once at compile time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from magicflow.dsl._expr_runtime import EvaluationError, PathNode, evaluator, resolve
from magicflow.dsl._expr_syntax import ExpressionError, parse

__all__ = [
    "EvaluationError",
    "Expression",
    "ExpressionError",
    "Template",
    "TemplateError",
    "compile_condition",
    "compile_expression",
    "compile_template",
]

Scope = Mapping[str, Any]
_JSON_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True, slots=True)
class Expression:
    """One compiled ``${...}``: immutable, thread-safe, evaluated many times."""

    source: str  # the text inside ${ }, stripped
    step_refs: frozenset[str]  # step ids it reads
    uses_item: bool  # reads item or index
    _tree: Any = field(compare=False, repr=False)  # the checked ast, with paths folded
    _path: PathNode | None = field(compare=False, repr=False)  # set when it is a pure path

    def evaluate(self, scope: Scope) -> Any:
        """The value in ``scope``; raises :class:`EvaluationError` and nothing else."""
        try:
            if self._path is not None:
                return resolve(scope, self._path)
            return evaluator().run(self._tree, scope)
        except EvaluationError as exc:
            exc.expression = self.source
            raise
        except RecursionError:
            raise _failed(self.source, "nested too deeply") from None
        except Exception as exc:  # a safety net: the language promises EvaluationError only
            raise _failed(self.source, f"{type(exc).__name__}: {exc}") from exc


def _failed(source: str, why: str) -> EvaluationError:
    error = EvaluationError(f"cannot evaluate {source!r}: {why}")
    error.expression = source
    return error


class TemplateError(ExpressionError):
    """Every bad string of a template: ``errors`` holds (path in the value, column, message)."""

    def __init__(self, errors: list[tuple[tuple[str | int, ...], int, str]]) -> None:
        path, column, message = errors[0]
        super().__init__(message, column)
        self.path = path
        self.errors = errors


_CACHE_SIZE = 4096
_compiled: dict[tuple[str, int, bool], tuple[Expression, int]] = {}


def _expression(
    text: str, start: int, step_ids: Collection[str], template: bool
) -> tuple[Expression, int]:
    """Compile the expression at ``text[start:]``; compiled ones are shared between plans.

    Parsing does not depend on the set of step ids, only checking does: a step id is the
    whole run of id characters after ``steps.``. So a cached expression is reused whenever
    every step it reads exists here; otherwise it is parsed again to report the problem.
    Workflows repeat the same few strings (``${input.email}``) many times.
    """
    key = (text, start, template)
    hit = _compiled.get(key)
    if hit is not None and all(ref in step_ids for ref in hit[0].step_refs):
        return hit
    checked, end = parse(text, start, step_ids, template=template)
    source = text[start : end - 1 if template else end].strip()
    path = checked.tree if isinstance(checked.tree, PathNode) else None
    expr = Expression(source, checked.step_refs, checked.uses_item, checked.tree, path)
    if len(_compiled) >= _CACHE_SIZE:
        _compiled.clear()
    _compiled[key] = (expr, end)
    return expr, end


def compile_expression(source: str, step_ids: Collection[str]) -> Expression:
    """Compile the text of one expression, without ``${ }``; raises :class:`ExpressionError`."""
    return _expression(source, 0, step_ids, False)[0]


def compile_condition(text: str | bool, step_ids: Collection[str]) -> Expression:
    """Compile a ``condition:`` or ``for_each:`` value: one ``${...}`` or a bare expression.

    A YAML boolean (``condition: false``) is accepted as the constant it is.
    """
    if isinstance(text, bool):
        return compile_expression("true" if text else "false", step_ids)
    if "${" not in text:
        return compile_expression(text, step_ids)
    lead = len(text) - len(text.lstrip())
    if not text.startswith("${", lead):
        raise ExpressionError("a condition must be a single ${...} expression", lead)
    expr, end = _expression(text, lead + 2, step_ids, True)
    rest = text[end:]
    if rest.strip():
        column = end + len(rest) - len(rest.lstrip())
        raise ExpressionError("unexpected text after '}': write one ${...} expression", column)
    return expr


# Templates -------------------------------------------------------------------------------

Render = Callable[[Scope], Any]


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled JSON-like value whose strings may hold ``${...}``."""

    step_refs: frozenset[str]
    uses_item: bool
    is_constant: bool  # no ${} anywhere
    source: Any = field(compare=False, repr=False)  # the value it was compiled from
    _key: str = field(repr=False)  # canonical JSON of the source: equality and hashing
    _render: Render = field(compare=False, repr=False)

    def render(self, scope: Scope) -> Any:
        """Fresh plain JSON data; raises :class:`EvaluationError` and nothing else."""
        return self._render(scope)

    def __reduce__(self) -> tuple[Any, ...]:  # closures don't pickle: compile again
        return compile_template, (self.source, self.step_refs)


def plain(value: Any) -> Any:
    """A fresh copy of JSON-like data: maps become dicts, sequences lists."""
    kind = type(value)
    if kind is dict or (kind not in _JSON_SCALARS and isinstance(value, Mapping)):
        return {k: plain(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [plain(v) for v in value]
    return value


def to_text(value: Any) -> str:
    """How an interpolated value is written into a string."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(plain(value), ensure_ascii=False, default=str)


class _Builder:
    """Walks a value once, compiling its strings and collecting every error."""

    def __init__(self, step_ids: Collection[str]) -> None:
        self.step_ids = step_ids
        self.errors: list[tuple[tuple[str | int, ...], int, str]] = []
        self.step_refs: set[str] = set()
        self.uses_item = False
        self.dynamic = False

    def build(self, value: Any, path: tuple[str | int, ...]) -> Render:
        if isinstance(value, str):
            return self._string(value, path)
        if isinstance(value, Mapping):
            return self._map(value, path)
        if isinstance(value, list | tuple):
            items = [self.build(v, (*path, i)) for i, v in enumerate(value)]
            return lambda scope: [render(scope) for render in items]
        if not isinstance(value, _JSON_SCALARS):
            self.errors.append((path, 0, f"unsupported value of type {type(value).__name__}"))
        return lambda scope: value

    def _map(self, value: Mapping[Any, Any], path: tuple[str | int, ...]) -> Render:
        items: list[tuple[str, Render]] = []
        for key, item in value.items():
            if not isinstance(key, str):
                self.errors.append((path, 0, f"map keys must be strings, not {key!r}"))
            items.append((str(key), self.build(item, (*path, str(key)))))
        return lambda scope: {key: render(scope) for key, render in items}

    def _string(self, text: str, path: tuple[str | int, ...]) -> Render:
        parts: list[str | Expression] = []
        pos = 0
        try:
            while (start := text.find("${", pos)) >= 0:
                if start > pos and text[start - 1] == "$":  # $${ is a literal ${
                    parts.append(text[pos : start - 1] + "${")
                    pos = start + 2
                    continue
                parts.append(text[pos:start])
                expr, pos = _expression(text, start + 2, self.step_ids, True)
                parts.append(expr)
                self.step_refs |= expr.step_refs
                self.uses_item |= expr.uses_item
        except ExpressionError as exc:
            self.errors.append((path, exc.column, exc.message))
            return lambda scope: text
        parts.append(text[pos:])
        chunks = tuple(p for p in parts if p != "")
        if not any(isinstance(p, Expression) for p in chunks):
            literal = "".join(p for p in chunks if isinstance(p, str))
            return lambda scope: literal
        self.dynamic = True
        if len(chunks) == 1 and isinstance(chunks[0], Expression):
            typed = chunks[0]
            return lambda scope: plain(typed.evaluate(scope))
        return lambda scope: "".join(
            p if isinstance(p, str) else to_text(p.evaluate(scope)) for p in chunks
        )


def compile_template(value: Any, step_ids: Collection[str]) -> Template:
    """Compile a JSON-like value; raises :class:`TemplateError` listing every bad string."""
    builder = _Builder(step_ids)
    render = builder.build(value, ())
    if builder.errors:
        raise TemplateError(builder.errors)
    if not builder.dynamic:
        constant = render({})  # reads no scope
        render = (lambda scope: constant) if isinstance(constant, _JSON_SCALARS) else render
    key = json.dumps(value, sort_keys=True, default=str)
    refs = frozenset(builder.step_refs)
    return Template(refs, builder.uses_item, not builder.dynamic, value, key, render)

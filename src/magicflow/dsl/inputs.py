"""``input_schema``: is it a valid JSON Schema (2020-12), and does an execution input match it.

This module imports jsonschema (slow to import), so the rest of ``dsl`` imports it only when
a document has an ``input_schema``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]

from magicflow.dsl.plan import WorkflowPlan

__all__ = ["schema_problems", "validate_input"]

_validators: dict[str, Draft202012Validator] = {}
_lock = threading.Lock()


def schema_problems(schema: Mapping[str, Any]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path inside the schema, message) for each way ``schema`` is not a valid schema."""
    meta = Draft202012Validator(
        Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    try:
        errors = sorted(meta.iter_errors(schema), key=lambda e: [str(p) for p in e.absolute_path])
    except Exception as exc:  # a schema so odd that the checker itself fails: still a message
        yield (), f"{type(exc).__name__}: {exc}"
        return
    for error in errors:
        yield tuple(error.absolute_path), error.message


def validate_input(plan: WorkflowPlan, value: Any) -> list[str]:
    """Every way ``value`` fails the plan's ``input_schema``, each naming the field; [] if fine."""
    if plan.input_schema is None:
        return []
    validator = _validator(plan)
    try:
        errors = sorted(validator.iter_errors(value), key=_order)
    except Exception as exc:  # an unresolvable $ref and the like
        return [f"input: the input_schema cannot be applied: {exc}"]
    return [f"{_location(error)}: {error.message}" for error in errors]


def _validator(plan: WorkflowPlan) -> Draft202012Validator:
    with _lock:
        found = _validators.get(plan.digest)
    if found is None:
        found = Draft202012Validator(dict(plan.input_schema or {}))
        with _lock:
            if len(_validators) > 256:
                _validators.clear()
            _validators[plan.digest] = found
    return found


def _order(error: ValidationError) -> list[str]:
    return [str(part) for part in error.absolute_path]


def _location(error: ValidationError) -> str:
    where = "input"
    for part in error.absolute_path:
        where += f"[{part}]" if isinstance(part, int) else f".{part}"
    return where

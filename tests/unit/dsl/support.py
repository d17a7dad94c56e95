"""Helpers for the DSL tests: build documents, validate them, read the messages."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from magicflow.dsl import Diagnostic, ValidationResult, WorkflowPlan, parse_workflow

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"

MINIMAL = """\
name: demo
version: "1.0"
steps:
  - id: a
    function: f
"""

# SPEC.md §1, verbatim: everything in it must be accepted.
SPEC_EXAMPLE = (Path(__file__).parent / "spec_example.yaml").read_text(encoding="utf-8")


def doc(text: str) -> str:
    """Dedented YAML."""
    return textwrap.dedent(text).lstrip("\n")


def with_steps(steps: str, head: str = "") -> str:
    """A workflow named demo with the given (dedented) steps block and top-level keys."""
    body = textwrap.indent(doc(steps), "  ")
    return f'name: demo\nversion: "1.0"\n{doc(head)}steps:\n{body}'


def check(text: str | bytes, **kwargs: Any) -> ValidationResult:
    return parse_workflow(text, "wf.yaml", **kwargs)


def messages(text: str | bytes, **kwargs: Any) -> list[str]:
    return [d.message for d in check(text, **kwargs).diagnostics]


def located(text: str | bytes, **kwargs: Any) -> list[tuple[int, int, str]]:
    return [(d.line, d.col, d.message) for d in check(text, **kwargs).diagnostics]


def plan_of(text: str, **kwargs: Any) -> WorkflowPlan:
    result = check(text, **kwargs)
    assert result.diagnostics == [], [d.format() for d in result.diagnostics]
    assert result.plan is not None
    return result.plan


def only(text: str | bytes, **kwargs: Any) -> Diagnostic:
    """The one diagnostic ``text`` produces."""
    diagnostics = check(text, **kwargs).diagnostics
    assert len(diagnostics) == 1, [d.format() for d in diagnostics]
    return diagnostics[0]

"""The workflow language: read, validate and compile YAML definitions into plans.

    result = parse_workflow(text, "onboarding.yaml")     # never raises for bad input
    for diagnostic in result.diagnostics:                 # FILE:LINE:COL: error: MESSAGE
        print(diagnostic.format())
    plan = result.plan                                    # WorkflowPlan, or None when invalid

``compile_workflow`` returns the plan or raises ``WorkflowValidationError``; ``load_workflow``
reads a file. Plans are immutable and cached by content. ``WorkflowLibrary`` resolves
sub-workflows among several files; ``validate_input`` checks an execution input against a
plan's ``input_schema``; ``json_schema`` is the JSON Schema of the language.
"""

from __future__ import annotations

from typing import Any

from magicflow.dsl.compile import (
    RefSite,
    ValidationResult,
    clear_plan_cache,
    compile_workflow,
    load_workflow,
    parse_workflow,
    plan_from_document,
)
from magicflow.dsl.diagnostics import Diagnostic
from magicflow.dsl.durations import DurationError, format_duration, parse_duration
from magicflow.dsl.library import WorkflowLibrary, load_library, version_key
from magicflow.dsl.plan import (
    BreakerPolicy,
    Compensation,
    DeadlineAction,
    FallbackOption,
    RetryPolicy,
    RetryStrategy,
    StepKind,
    StepPlan,
    TimeoutAction,
    WorkflowPlan,
    WorkflowRef,
)
from magicflow.dsl.policies import Defaults
from magicflow.dsl.schema import json_schema
from magicflow.dsl.source import Limits

__all__ = [
    "BreakerPolicy",
    "Compensation",
    "DeadlineAction",
    "Defaults",
    "Diagnostic",
    "DurationError",
    "FallbackOption",
    "Limits",
    "RefSite",
    "RetryPolicy",
    "RetryStrategy",
    "StepKind",
    "StepPlan",
    "TimeoutAction",
    "ValidationResult",
    "WorkflowLibrary",
    "WorkflowPlan",
    "WorkflowRef",
    "clear_plan_cache",
    "compile_workflow",
    "format_duration",
    "json_schema",
    "load_library",
    "load_workflow",
    "parse_duration",
    "parse_workflow",
    "plan_from_document",
    "validate_input",
    "version_key",
]


def validate_input(plan: WorkflowPlan, value: Any) -> list[str]:
    """Every way ``value`` fails ``plan.input_schema`` (each message names the field)."""
    if plan.input_schema is None:
        return []
    # jsonschema is slow to import; only workflows with an input_schema pay for it.
    from magicflow.dsl.inputs import validate_input as check

    return check(plan, value)

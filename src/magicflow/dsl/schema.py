"""The workflow language, described once: every key, its type, enum values, patterns and docs.

Both the validator's structural checks (``dsl.structure``) and the published JSON Schema
(:func:`json_schema`, printed by ``magic-flow schema``) are derived from the records below,
and a test keeps ``docs/yaml-reference.md`` in step with them. Rules that need the whole
document (references between steps, cycles, expression scope) live in ``dsl.validate``.
"""

from __future__ import annotations

from typing import Any

from magicflow.dsl.durations import DURATION_PATTERN
from magicflow.dsl.spec import (
    Boolean,
    Choice,
    Duration,
    Either,
    Expression,
    Field,
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

__all__ = ["STEP", "STEP_ID", "STEP_KINDS", "WORKFLOW", "json_schema", "records"]

# -- names ---------------------------------------------------------------------------------

WORKFLOW_NAME = Text(
    r"^[a-z][a-z0-9-]{0,62}$",
    "lowercase letters, digits and hyphens, starting with a letter, at most 63 characters",
)
VERSION = Text(
    r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$", "letters, digits, dots, '-', '_' or '+', like 1.2.0"
)
STEP_ID = Text(
    r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$",
    "lowercase letters and digits in words joined by single hyphens, like validate-user",
)
FUNCTION_NAME = Text(
    r"^[A-Za-z_][A-Za-z0-9_.:-]*$",
    "a registered function name: letters, digits, '_', '.', ':' or '-'",
)
WORKFLOW_REF = Text(
    r"^[a-z][a-z0-9-]{0,62}(@[A-Za-z0-9][A-Za-z0-9._+-]{0,63})?$",
    "a workflow name, or name@version",
)
SIGNAL_NAME = Text(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", "letters, digits, '_', '.' or '-'")
QUEUE_NAME = Text(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", "letters, digits, '_', '.' or '-'")
ERROR_TYPE = Text(r"^[A-Za-z_][A-Za-z0-9_.]*$", "an exception class name, like ValidationError")

STEP_TIMEOUT_ACTIONS = ("fail", "skip", "retry", "fallback")
DEADLINE_ACTIONS = ("fail", "cancel")
STRATEGIES = ("fixed", "linear", "exponential")
STEP_KINDS = ("function", "workflow", "wait_for", "sleep")

# -- the language --------------------------------------------------------------------------

RETRY_CONFIG = Record(
    "retry_config",
    "When and how often a failed attempt is tried again. Fields not given are inherited "
    "(server defaults, then the workflow's `defaults`), field by field.",
    (
        Field(
            "strategy",
            Choice(STRATEGIES),
            "How the delay grows between attempts.",
            default="exponential",
        ),
        Field("max_attempts", Integer(1), "Attempts in all, counting the first (>= 1).", default=3),
        Field("initial_interval", Duration(), "Delay before the second attempt.", default="1s"),
        Field("max_interval", Duration(), "Upper bound of any delay.", default="1m"),
        Field(
            "multiplier", Number(1), "Growth factor of each delay (exponential only).", default=2.0
        ),
        Field(
            "jitter",
            Boolean(),
            "Draw each delay uniformly from [0, delay] (full jitter).",
            default=True,
        ),
        Field(
            "non_retryable_errors",
            ListOf(ERROR_TYPE, unique=True),
            "Error type names that fail the step at once, skipping the remaining attempts.",
        ),
    ),
)

CIRCUIT_BREAKER = Record(
    "circuit_breaker",
    "A circuit breaker keyed by function name, shared by every execution and executor: after "
    "`failure_threshold` consecutive failures calls are refused (the fallback is used) until "
    "`timeout` has passed, then `half_open_max_calls` trial calls decide whether it closes.",
    (
        Field("failure_threshold", Integer(1), "Consecutive failures that open it.", default=5),
        Field("timeout", Duration(), "How long it stays open before half-open.", default="30s"),
        Field("half_open_max_calls", Integer(1), "Trial calls allowed while half-open.", default=1),
    ),
)

DEFAULTS = Record(
    "defaults",
    "Policies inherited by every step that does not set them itself.",
    (
        Field("timeout", Duration(), "Default step timeout."),
        Field(
            "timeout_action",
            Choice(STEP_TIMEOUT_ACTIONS),
            "Default step timeout action.",
            default="fail",
        ),
        Field("retry_config", RETRY_CONFIG, "Default retry policy, merged field by field."),
        Field("circuit_breaker", CIRCUIT_BREAKER, "Default circuit breaker for function steps."),
        Field("queue", QUEUE_NAME, "Default queue for function steps.", default="default"),
    ),
)

FALLBACK_OPTION = Record(
    "fallback",
    "What a step produces when its attempts are exhausted, its breaker is open, or its "
    "`timeout_action` is `fallback`: a fixed `output`, or a `function` call. A list of these is "
    "a chain, tried in order.",
    (
        Field("output", Template(), "The step's output, used as is (may hold expressions)."),
        Field("function", FUNCTION_NAME, "A business function to call instead."),
        Field("input", Template(), "The function's input (default: the step's input)."),
    ),
    exactly_one=("output", "function"),
    requires=(("input", "function"),),
)

COMPENSATION = Record(
    "compensation",
    "Saga compensation: a function run, in reverse completion order, for every completed step "
    "with one when the execution fails later.",
    (
        Field(
            "function", FUNCTION_NAME, "The business function that undoes the step.", required=True
        ),
        Field(
            "input",
            Template(),
            "Its input (default: the step's input); may read the step's own output.",
        ),
    ),
)

STEP = Record(
    "step",
    "One node of the DAG. A step has exactly one of `function`, `workflow`, `wait_for`, `sleep`.",
    (
        Field("id", STEP_ID, "Unique id, used by `depends_on` and in expressions.", required=True),
        Field("description", Text(), "What the step does (shown in graphs and the UI)."),
        Field("function", FUNCTION_NAME, "The business function that executes the step."),
        Field(
            "workflow",
            WORKFLOW_REF,
            "Run a child workflow: `name` (latest version) or `name@version`.",
        ),
        Field(
            "wait_for", SIGNAL_NAME, "Wait for the signal of this name; its payload is the output."
        ),
        Field("sleep", Duration(), "A durable timer: the step completes after this long."),
        Field("depends_on", ListOf(STEP_ID, unique=True), "Steps that must be satisfied first."),
        Field(
            "condition",
            Either((Expression(), Boolean())),
            "Run only when true; otherwise the step is `skipped`.",
        ),
        Field(
            "for_each",
            Expression(),
            "Fan out: one call per item of this list; the output is the list of outputs.",
        ),
        Field("max_parallel", Integer(1), "With `for_each`: at most this many items at once."),
        Field("input", Template(), "The step's input (default: the execution input)."),
        Field("timeout", Duration(), "Deadline of one attempt."),
        Field(
            "timeout_action",
            Choice(STEP_TIMEOUT_ACTIONS),
            "What happens when `timeout` passes.",
            default="fail",
        ),
        Field("retry_config", RETRY_CONFIG, "Retry policy; merged over the inherited one."),
        Field("circuit_breaker", CIRCUIT_BREAKER, "Circuit breaker of the step's function."),
        Field(
            "fallback",
            Either((FALLBACK_OPTION, ListOf(FALLBACK_OPTION, min_items=1))),
            "A fallback, or a chain of them tried in order.",
        ),
        Field("compensation", COMPENSATION, "Undo this step if the execution fails later."),
        Field(
            "queue",
            QUEUE_NAME,
            "Route the step's tasks to executors serving this queue.",
            default="default",
        ),
        Field(
            "continue_on_failure",
            Boolean(),
            "A failure counts as satisfied: the execution goes on.",
            default=False,
        ),
    ),
    exactly_one=STEP_KINDS,
    requires=(("max_parallel", "for_each"),),
)

WORKFLOW = Record(
    "workflow",
    "A Magic Flow workflow definition.",
    (
        Field("name", WORKFLOW_NAME, "The workflow's name.", required=True),
        Field("version", VERSION, 'The version, a string: quote numbers (`"1.0"`).', required=True),
        Field("description", Text(), "What the workflow does."),
        Field("metadata", ScalarMap(), "Free-form labels: a mapping of scalars."),
        Field(
            "input_schema", JsonSchemaDoc(), "JSON Schema (2020-12) the execution input must match."
        ),
        Field("timeout", Duration(), "Deadline of the whole execution."),
        Field(
            "timeout_action",
            Choice(DEADLINE_ACTIONS),
            "What happens at the deadline.",
            default="fail",
        ),
        Field("defaults", DEFAULTS, "Policies every step inherits unless it overrides them."),
        Field(
            "output", Template(), "The execution's output (default: each leaf step's output by id)."
        ),
        Field(
            "steps",
            ListOf(STEP, min_items=1),
            "The steps, in any order (dependencies decide).",
            required=True,
        ),
    ),
)


def records() -> tuple[Record, ...]:
    """Every record of the language, the workflow first."""
    return (WORKFLOW, STEP, DEFAULTS, RETRY_CONFIG, CIRCUIT_BREAKER, FALLBACK_OPTION, COMPENSATION)


# -- JSON Schema ---------------------------------------------------------------------------

SCHEMA_ID = "https://magicflow.dev/schemas/workflow.json"


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a workflow file, for editors and tools."""
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Magic Flow workflow",
    }
    schema.update(_record(WORKFLOW))
    schema["$defs"] = {r.name: _record(r) for r in records() if r is not WORKFLOW}
    return schema


def _record(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "object",
        "description": record.doc,
        "properties": {f.name: _field(f) for f in record.fields},
        "additionalProperties": False,
    }
    required = [f.name for f in record.fields if f.required]
    if required:
        out["required"] = required
    if record.exactly_one:
        out["oneOf"] = [{"required": [name]} for name in record.exactly_one]
    if record.requires:
        out["dependentRequired"] = {key: [other] for key, other in record.requires}
    return out


def _field(field: Field) -> dict[str, Any]:
    out = _spec(field.spec)
    if "$ref" in out:
        out = {"$ref": out["$ref"]}
    out["description"] = field.doc
    if field.default is not None:
        out["default"] = field.default
    return out


def _spec(spec: Spec) -> dict[str, Any]:  # noqa: C901 - one branch per kind of spec
    match spec:
        case Text(pattern=pattern):
            return {"type": "string", "minLength": 1, **({"pattern": pattern} if pattern else {})}
        case Choice(values=values):
            return {"type": "string", "enum": list(values)}
        case Integer(minimum=minimum):
            return {"type": "integer", **({"minimum": minimum} if minimum is not None else {})}
        case Number(minimum=minimum):
            return {"type": "number", **({"minimum": minimum} if minimum is not None else {})}
        case Boolean():
            return {"type": "boolean"}
        case Duration():
            return {
                "anyOf": [
                    {"type": "number", "exclusiveMinimum": 0},
                    {"type": "string", "pattern": DURATION_PATTERN},
                ]
            }
        case Expression():
            return {"type": "string", "minLength": 1}
        case Template():
            return {}
        case ScalarMap():
            scalar = {"type": ["string", "number", "boolean", "null"]}
            return {"type": "object", "additionalProperties": scalar}
        case JsonSchemaDoc():
            return {"type": "object"}
        case ListOf(item=item, min_items=min_items, unique=unique):
            out: dict[str, Any] = {"type": "array", "items": _spec(item)}
            if min_items:
                out["minItems"] = min_items
            if unique:
                out["uniqueItems"] = True
            return out
        case Record(name=name):
            return {"$ref": f"#/$defs/{name}"}
        case Either(options=options):
            return {"anyOf": [_spec(option) for option in options]}
    raise TypeError(f"unknown spec {spec!r}")  # pragma: no cover

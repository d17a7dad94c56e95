"""Build the immutable :class:`~magicflow.dsl.plan.WorkflowPlan` from a valid document.

Runs only when validation found nothing: every value here has the right type, every
expression is compiled (``compiled`` holds them by path) and the graph is acyclic.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from magicflow.dsl.dag import Graph
from magicflow.dsl.durations import parse_duration
from magicflow.dsl.expressions import Expression, Template
from magicflow.dsl.plan import (
    Compensation,
    DeadlineAction,
    FallbackOption,
    StepKind,
    StepPlan,
    TimeoutAction,
    WorkflowPlan,
    WorkflowRef,
)
from magicflow.dsl.policies import Defaults, merge_breaker, merge_defaults, merge_retry
from magicflow.dsl.scope import Compiled
from magicflow.dsl.source import Path, SourceMap
from magicflow.dsl.validate import StepInfo, split_ref

__all__ = ["build_plan", "document_digest"]


def document_digest(document: Any) -> str:
    """sha256 of the canonical JSON of a document: the identity of a version's content."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_plan(
    data: dict[str, Any],
    steps: list[StepInfo],
    graph: Graph,
    compiled: Compiled,
    source_map: SourceMap,
    server: Defaults,
) -> WorkflowPlan:
    inherited = merge_defaults(server, data.get("defaults"))
    by_id = {step.id: step for step in steps if step.id is not None}
    lines = source_map.item_lines(("steps",))
    plans = [
        _step_plan(by_id[step_id], graph, compiled, inherited, lines) for step_id in graph.order
    ]
    refs = frozenset(p.workflow for p in plans if p.workflow is not None)
    output = compiled.get(("output",))
    return WorkflowPlan(
        name=data["name"],
        version=data["version"],
        steps=tuple(plans),
        step_index={p.id: p for p in plans},
        roots=tuple(graph.roots),
        leaves=tuple(graph.leaves),
        digest=document_digest(data),
        document=data,
        description=data.get("description"),
        metadata=dict(data.get("metadata") or {}),
        input_schema=data.get("input_schema"),
        timeout=parse_duration(data["timeout"]) if "timeout" in data else None,
        timeout_action=DeadlineAction(data.get("timeout_action", "fail")),
        output=output if isinstance(output, Template) else None,
        workflow_refs=refs,
    )


def _step_plan(
    step: StepInfo, graph: Graph, compiled: Compiled, inherited: Defaults, lines: list[int]
) -> StepPlan:
    raw = step.data
    path = step.path
    assert step.id is not None
    assert step.kind is not None
    kind = StepKind(step.kind)
    timeout: float | None = None
    if kind is not StepKind.SLEEP:
        timeout = parse_duration(raw["timeout"]) if "timeout" in raw else inherited.timeout
    max_parallel = raw.get("max_parallel")
    return StepPlan(
        id=step.id,
        kind=kind,
        depends_on=tuple(step.deps),
        dependents=tuple(graph.dependents[step.id]),
        function=raw.get("function"),
        workflow=_workflow_ref(raw.get("workflow")),
        signal=raw.get("wait_for"),
        sleep=parse_duration(raw["sleep"]) if "sleep" in raw else None,
        input=_template(compiled, (*path, "input")),
        condition=_expression(compiled, (*path, "condition")),
        for_each=_expression(compiled, (*path, "for_each")),
        max_parallel=max_parallel if isinstance(max_parallel, int) else None,
        timeout=timeout,
        timeout_action=TimeoutAction(raw.get("timeout_action", inherited.timeout_action)),
        retry=merge_retry(inherited.retry, raw.get("retry_config")),
        breaker=(
            merge_breaker(inherited.breaker, raw.get("circuit_breaker"))
            if kind is StepKind.FUNCTION
            else None
        ),
        fallback=_fallback(raw.get("fallback"), compiled, (*path, "fallback")),
        compensation=_compensation(raw.get("compensation"), compiled, path),
        queue=raw.get("queue", inherited.queue),
        continue_on_failure=bool(raw.get("continue_on_failure", False)),
        line=lines[step.position] if step.position < len(lines) else 0,
    )


def _workflow_ref(value: Any) -> WorkflowRef | None:
    if not isinstance(value, str):
        return None
    name, version = split_ref(value)
    return WorkflowRef(name, version)


def _template(compiled: Compiled, path: Path) -> Template | None:
    found = compiled.get(path)
    return found if isinstance(found, Template) else None


def _expression(compiled: Compiled, path: Path) -> Expression | None:
    found = compiled.get(path)
    return found if isinstance(found, Expression) else None


def _fallback(raw: Any, compiled: Compiled, path: Path) -> tuple[FallbackOption, ...]:
    if isinstance(raw, dict):
        return (_fallback_option(raw, compiled, path),)
    if isinstance(raw, list):
        return tuple(_fallback_option(o, compiled, (*path, i)) for i, o in enumerate(raw))
    return ()


def _fallback_option(raw: dict[str, Any], compiled: Compiled, path: Path) -> FallbackOption:
    if "function" in raw:
        return FallbackOption(
            kind="function", function=raw["function"], input=_template(compiled, (*path, "input"))
        )
    return FallbackOption(kind="output", output=_template(compiled, (*path, "output")))


def _compensation(raw: Any, compiled: Compiled, path: Path) -> Compensation | None:
    if not isinstance(raw, dict):
        return None
    return Compensation(raw["function"], _template(compiled, (*path, "compensation", "input")))

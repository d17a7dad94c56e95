"""Rules that need the whole document: step ids, dependencies, cycles, step kinds, policies.

:func:`analyse` runs after the structural checks of ``dsl.structure`` and reports what they
cannot see. It tolerates any malformed part (already reported) and keeps going, so one pass
lists every problem. Expressions are compiled and scope-checked by ``dsl.scope``.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from magicflow.dsl.dag import Graph, resolve_graph
from magicflow.dsl.policies import Defaults
from magicflow.dsl.report import Reporter
from magicflow.dsl.schema import STEP_ID, STEP_KINDS
from magicflow.dsl.source import Limits, Path
from magicflow.dsl.text import did_you_mean

__all__ = ["Analysis", "StepInfo", "analyse", "split_ref"]

_STEP_ID = re.compile(STEP_ID.pattern or "")

#: Keys that mean nothing for a kind of step (the value says why).
_SLEEP_ONLY_WAITS = (
    "input", "for_each", "max_parallel", "retry_config", "circuit_breaker",
    "fallback", "compensation", "timeout", "timeout_action", "queue",
)  # fmt: skip
_NOT_FOR: dict[str, dict[str, str]] = {
    "sleep": dict.fromkeys(_SLEEP_ONLY_WAITS, "a sleep step only waits"),
    "wait_for": dict.fromkeys(
        ("input", "for_each", "max_parallel", "retry_config", "circuit_breaker"),
        "a wait_for step calls no function",
    )
    | {"compensation": "a wait_for step has nothing to undo"},
    "workflow": {"circuit_breaker": "circuit breakers are keyed by function name"},
}


class StepInfo:
    """A step mapping of the document, as far as it could be understood."""

    __slots__ = ("data", "deps", "id", "kind", "position")

    def __init__(self, position: int, data: dict[str, Any], step_id: str | None, kind: str | None):
        self.position = position
        self.data = data
        self.id = step_id  # None when missing, malformed or a duplicate
        self.kind = kind
        self.deps: list[str] = []  # entries that name existing steps

    @property
    def path(self) -> Path:
        return ("steps", self.position)


class Analysis(NamedTuple):
    steps: list[StepInfo]
    ids: frozenset[str]
    graph: Graph


def analyse(data: dict[str, Any], rep: Reporter, limits: Limits, server: Defaults) -> Analysis:
    """Check the rules between the parts of ``data``; the structure was checked already."""
    steps = _collect_steps(data, rep, limits)
    ids = frozenset(s.id for s in steps if s.id is not None)
    for step in steps:
        _check_depends_on(step, ids, rep)
    graph = resolve_graph(
        [s.id for s in steps if s.id is not None], {s.id: s.deps for s in steps if s.id}
    )
    _report_cycles(graph, {s.id: s for s in steps if s.id}, rep)
    workflow_defaults = data.get("defaults")
    inherited = workflow_defaults if isinstance(workflow_defaults, dict) else {}
    for step in steps:
        _check_kind(step, rep)
        _check_fallback_needed(step, inherited, server, rep)
        _check_self_reference(step, data, rep)
        _check_retry_config(step.data.get("retry_config"), (*step.path, "retry_config"), rep)
    _check_retry_config(inherited.get("retry_config"), ("defaults", "retry_config"), rep)
    return Analysis(steps, ids, graph)


def _collect_steps(data: dict[str, Any], rep: Reporter, limits: Limits) -> list[StepInfo]:
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list):
        return []
    if len(raw_steps) > limits.max_steps:
        message = f"too many steps: {len(raw_steps):,} (the limit is {limits.max_steps:,})"
        rep.at(("steps",), message)
    steps: list[StepInfo] = []
    first_seen: dict[str, StepInfo] = {}
    for position, raw in enumerate(raw_steps):
        if not isinstance(raw, dict):
            continue
        step_id = raw.get("id") if isinstance(raw.get("id"), str) else None
        kinds = [kind for kind in STEP_KINDS if kind in raw]
        step = StepInfo(position, raw, step_id, kinds[0] if len(kinds) == 1 else None)
        if step_id is not None and step_id in first_seen:
            line = rep.source_map.value((*first_seen[step_id].path, "id")).line
            rep.at((*step.path, "id"), f"duplicate step id {step_id!r} (first used on line {line})")
            step.id = None
        elif step_id is not None:
            first_seen[step_id] = step
        steps.append(step)
    return steps


def _check_depends_on(step: StepInfo, ids: frozenset[str], rep: Reporter) -> None:
    entries = step.data.get("depends_on")
    if not isinstance(entries, list):
        return
    for index, entry in enumerate(entries):
        if not isinstance(entry, str) or _STEP_ID.match(entry) is None:
            continue  # reported by the structural checks
        if entry in ids:
            if entry not in step.deps:
                step.deps.append(entry)
        else:
            hint = did_you_mean(entry, ids)
            rep.at((*step.path, "depends_on", index), f"unknown step {entry!r} in depends_on{hint}")


def _report_cycles(graph: Graph, by_id: dict[str, StepInfo], rep: Reporter) -> None:
    for cycle in graph.cycles:
        first, second = cycle[0], cycle[1]
        step = by_id[first]
        entries = step.data.get("depends_on")
        index = entries.index(second) if isinstance(entries, list) and second in entries else None
        path = (*step.path, "depends_on", index) if index is not None else (*step.path, "id")
        rep.at(path, f"dependency cycle: {' -> '.join(cycle)}")


def _check_kind(step: StepInfo, rep: Reporter) -> None:
    if step.kind is None:
        return  # none or several: reported by the structural checks
    for key, why in _NOT_FOR.get(step.kind, {}).items():
        if key in step.data:
            message = f"{key!r} does not apply to a {step.kind} step ({why})"
            rep.at_key((*step.path, key), message)
    if step.kind == "wait_for" and step.data.get("timeout_action") == "retry":
        message = (
            "timeout_action 'retry' does not apply to a wait_for step: use fail, skip or fallback"
        )
        rep.at((*step.path, "timeout_action"), message)


def _check_fallback_needed(
    step: StepInfo, defaults: dict[str, Any], server: Defaults, rep: Reporter
) -> None:
    if "fallback" in step.data or step.kind == "sleep":
        return
    if step.data.get("timeout_action") == "fallback":
        message = "timeout_action 'fallback' needs a 'fallback' on the step (output or function)"
        rep.at((*step.path, "timeout_action"), message)
        return
    if "timeout_action" in step.data:
        return
    source = "defaults" if "timeout_action" in defaults else "the server defaults"
    action = defaults.get("timeout_action", server.timeout_action)
    has_timeout = any("timeout" in layer for layer in (step.data, defaults))
    if action == "fallback" and (has_timeout or server.timeout is not None):
        name = step.id or "this step"
        message = (
            f"step {name!r} inherits timeout_action 'fallback' from {source} but has no 'fallback'"
        )
        rep.at((*step.path, "id"), message)


def _check_self_reference(step: StepInfo, data: dict[str, Any], rep: Reporter) -> None:
    ref = step.data.get("workflow")
    if step.kind != "workflow" or not isinstance(ref, str):
        return
    name, version = split_ref(ref)
    if name == data.get("name") and version in (None, data.get("version")):
        message = f"workflow {data.get('name')!r} runs itself: a sub-workflow cannot be its parent"
        rep.at((*step.path, "workflow"), message)


def _check_retry_config(config: Any, path: Path, rep: Reporter) -> None:
    if not isinstance(config, dict) or "multiplier" not in config:
        return
    strategy = config.get("strategy")
    if strategy in ("fixed", "linear"):
        message = f"'multiplier' applies only to the exponential strategy, not {strategy!r}"
        rep.at_key((*path, "multiplier"), message)


def split_ref(ref: str) -> tuple[str, str | None]:
    """``name@version`` -> (name, version); ``name`` -> (name, None)."""
    name, _, version = ref.partition("@")
    return name, version or None

"""The compiled plan: order, graph facts, effective policies, identity and caching."""

import dataclasses

import pytest

from magicflow.dsl import (
    BreakerPolicy,
    DeadlineAction,
    Defaults,
    RetryPolicy,
    RetryStrategy,
    StepKind,
    TimeoutAction,
    WorkflowRef,
    clear_plan_cache,
    compile_workflow,
    parse_workflow,
    plan_from_document,
)
from magicflow.errors import WorkflowValidationError
from tests.unit.dsl.support import MINIMAL, plan_of, with_steps

DIAMOND = """\
- {id: d, function: f, depends_on: [b, c]}
- {id: c, function: f, depends_on: [a]}
- {id: b, function: f, depends_on: [a]}
- {id: a, function: f}
- {id: e, function: f}
"""


def test_topological_order_keeps_file_order_for_ties() -> None:
    plan = plan_of(with_steps(DIAMOND))
    assert [s.id for s in plan.steps] == ["a", "c", "b", "d", "e"]


def test_graph_facts() -> None:
    plan = plan_of(with_steps(DIAMOND))
    assert plan.roots == ("a", "e")
    assert plan.leaves == ("d", "e")
    assert plan.step("a").dependents == ("c", "b")
    assert plan.step("d").depends_on == ("b", "c")
    assert set(plan.step_index) == {"a", "b", "c", "d", "e"}
    assert plan.step("d").line == 4


def test_identity_and_document() -> None:
    plan = plan_of(MINIMAL)
    assert (plan.name, plan.version) == ("demo", "1.0")
    assert plan.document == {
        "name": "demo",
        "version": "1.0",
        "steps": [{"id": "a", "function": "f"}],
    }
    assert len(plan.digest) == 64
    reformatted = '{"version": "1.0", "steps": [{"function": "f", "id": "a"}], "name": "demo"}'
    assert plan_of(reformatted).digest == plan.digest
    assert plan_of(MINIMAL.replace("function: f", "function: g")).digest != plan.digest


def test_plan_is_immutable() -> None:
    plan = plan_of(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.steps[0].function = "g"  # type: ignore[misc]


def test_plans_are_cached_by_content() -> None:
    clear_plan_cache()
    first = parse_workflow(MINIMAL, "one.yaml")
    second = parse_workflow(MINIMAL.encode(), "two.yaml")
    assert first.plan is second.plan
    assert second.file == "two.yaml"
    other_defaults = parse_workflow(MINIMAL, defaults=Defaults(queue="q"))
    assert other_defaults.plan is not first.plan


def test_compile_workflow_raises_with_every_diagnostic() -> None:
    with pytest.raises(WorkflowValidationError) as caught:
        compile_workflow(with_steps("- {id: a, function: f, depend_on: []}\n- {id: a}\n"))
    assert len(caught.value.diagnostics) == 3
    assert "(and 2 more)" in str(caught.value)


def test_plan_from_a_stored_document() -> None:
    plan = plan_of(MINIMAL)
    assert plan_from_document(dict(plan.document)).digest == plan.digest


def test_built_in_defaults() -> None:
    step = plan_of(MINIMAL).step("a")
    assert step.retry == RetryPolicy(
        strategy=RetryStrategy.EXPONENTIAL,
        max_attempts=3,
        initial_interval=1.0,
        max_interval=60.0,
        multiplier=2.0,
        jitter=True,
    )
    assert step.timeout is None
    assert step.timeout_action is TimeoutAction.FAIL
    assert step.breaker is None
    assert step.queue == "default"
    assert step.continue_on_failure is False
    assert step.input is None


def test_inheritance_server_then_workflow_then_step() -> None:
    server = Defaults(
        timeout=60.0,
        retry=RetryPolicy(max_attempts=7, jitter=False),
        breaker=BreakerPolicy(failure_threshold=9),
        queue="server-q",
    )
    text = with_steps(
        """\
        - id: plain
          function: f
        - id: custom
          function: f
          timeout: 2s
          timeout_action: retry
          retry_config: {initial_interval: 250ms}
          circuit_breaker: {timeout: 5s}
          queue: own
        - id: wait
          wait_for: go
        - id: nap
          sleep: 1m30s
        """,
        head=(
            "defaults:\n  timeout: 30s\n  timeout_action: skip\n"
            "  retry_config: {strategy: linear, max_attempts: 4}\n"
            "  circuit_breaker: {failure_threshold: 2}\n  queue: wf-q\n"
        ),
    )
    plan = plan_of(text, defaults=server)
    plain, custom = plan.step("plain"), plan.step("custom")
    assert plain.timeout == 30.0
    assert plain.timeout_action is TimeoutAction.SKIP
    assert plain.retry == RetryPolicy(strategy=RetryStrategy.LINEAR, max_attempts=4, jitter=False)
    assert plain.breaker == BreakerPolicy(failure_threshold=2)
    assert plain.queue == "wf-q"
    assert custom.timeout == 2.0
    assert custom.timeout_action is TimeoutAction.RETRY
    assert custom.retry == RetryPolicy(
        strategy=RetryStrategy.LINEAR, max_attempts=4, initial_interval=0.25, jitter=False
    )
    assert custom.breaker == BreakerPolicy(failure_threshold=2, timeout=5.0)
    assert custom.queue == "own"
    assert plan.step("wait").breaker is None  # breakers are keyed by function
    assert plan.step("wait").timeout == 30.0
    assert plan.step("nap").sleep == 90.0
    assert plan.step("nap").timeout is None  # a sleep is not bounded by step timeouts


def test_server_defaults_apply_without_workflow_defaults() -> None:
    server = Defaults(timeout=12.0, queue="q1", retry=RetryPolicy(max_attempts=1))
    step = plan_of(MINIMAL, defaults=server).step("a")
    assert (step.timeout, step.queue, step.retry.max_attempts) == (12.0, "q1", 1)


def test_step_kinds() -> None:
    text = with_steps(
        """\
        - {id: fn, function: do_it}
        - {id: child, workflow: kyc-check@1.0.0}
        - {id: latest, workflow: kyc-check}
        - {id: signal, wait_for: approval}
        - {id: timer, sleep: 250ms}
        """
    )
    plan = plan_of(text)
    assert plan.step("fn").kind is StepKind.FUNCTION
    assert plan.step("fn").function == "do_it"
    assert plan.step("child").workflow == WorkflowRef("kyc-check", "1.0.0")
    assert str(plan.step("latest").workflow) == "kyc-check"
    assert plan.step("signal").signal == "approval"
    assert plan.step("timer").sleep == 0.25
    assert plan.workflow_refs == {WorkflowRef("kyc-check", "1.0.0"), WorkflowRef("kyc-check")}


def test_fallbacks_compensation_and_flags() -> None:
    text = with_steps(
        """\
        - id: a
          function: f
          for_each: ${input.xs}
          max_parallel: 3
          continue_on_failure: true
          fallback:
            - function: backup
              input: {x: 1}
            - function: other
            - output: {degraded: true}
          compensation: {function: undo}
        - id: b
          function: f
          fallback: {output: null}
        """
    )
    plan = plan_of(text)
    a = plan.step("a")
    assert a.max_parallel == 3
    assert a.continue_on_failure is True
    assert [o.kind for o in a.fallback] == ["function", "function", "output"]
    assert a.fallback[0].function == "backup"
    assert a.fallback[0].input is not None
    assert a.fallback[0].input.render({}) == {"x": 1}
    assert a.fallback[1].input is None  # the step's input is used
    assert a.fallback[2].output is not None
    assert a.fallback[2].output.render({}) == {"degraded": True}
    assert a.compensation is not None
    assert (a.compensation.function, a.compensation.input) == ("undo", None)
    [b_fallback] = plan.step("b").fallback
    assert b_fallback.output is not None
    assert b_fallback.output.render({}) is None


def test_workflow_level_fields() -> None:
    text = MINIMAL + (
        "description: Demo\nmetadata: {team: x}\ntimeout: 5m\ntimeout_action: cancel\n"
        "input_schema: {type: object}\noutput: {done: true}\n"
    )
    plan = plan_of(text)
    assert plan.description == "Demo"
    assert plan.metadata == {"team": "x"}
    assert plan.timeout == 300.0
    assert plan.timeout_action is DeadlineAction.CANCEL
    assert plan.input_schema == {"type": "object"}
    assert plan.output is not None
    assert plan.output.render({}) == {"done": True}

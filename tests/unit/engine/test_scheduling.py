"""DAG scheduling, conditions, inputs, output, and the task messages ``decide`` emits."""

from __future__ import annotations

import pytest

from magicflow.engine.model import (
    DispatchTask,
    ExecutionState,
    ExecutionStatus,
    Start,
    StepStatus,
    TaskResult,
)
from magicflow.messages import ResultMessage
from magicflow.tracecontext import traceparent

from .harness import Run, error, plan_of, succeed

ONE = """
name: one
version: "1.0"
steps:
  - id: a
    function: fa
"""

DIAMOND = """
name: diamond
version: "2"
steps:
  - id: a
    function: fa
  - id: b
    function: fb
    depends_on: [a]
  - id: c
    function: fc
    depends_on: [a]
  - id: d
    function: fd
    depends_on: [b, c]
"""


def test_start_creates_running_state_and_dispatches_roots() -> None:
    run = Run.of(ONE)
    commands = run.start({"x": 1})
    st = run.st
    assert st.id == "ex1"
    assert (st.workflow, st.version, st.status) == ("one", "1.0", ExecutionStatus.RUNNING)
    assert st.input == {"x": 1}
    assert st.started_at == run.now
    [dispatch] = [c for c in commands if isinstance(c, DispatchTask)]
    task = dispatch.task
    assert task.id == "ex1:a:1"
    assert task.workflow_id == "one@1.0"
    assert (task.execution_id, task.step_id, task.function) == ("ex1", "a", "fa")
    assert task.attempt == 1
    assert task.step_type == "function"
    assert task.queue == "default"
    assert task.input == {"x": 1}
    assert task.context == {
        "workflow_name": "one",
        "workflow_version": "1.0",
        "traceparent": traceparent("ex1"),
    }
    assert task.retry_policy is not None
    assert task.retry_policy["max_attempts"] == 3
    assert run.status("a") is StepStatus.RUNNING
    assert run.kinds() == ["execution.started", "step.started"]


def test_one_step_completes_with_default_output() -> None:
    run = Run.of(ONE)
    run.start()
    run.now += 1
    run.ok("a", {"y": 2})
    st = run.st
    assert st.status is ExecutionStatus.COMPLETED
    assert st.output == {"a": {"y": 2}}
    assert st.completed_at == run.now
    assert st.steps["a"].attempts == 1
    assert st.tasks == {}
    assert run.kinds()[-2:] == ["step.completed", "execution.completed"]


def test_missing_input_is_an_empty_object() -> None:
    run = Run.of(ONE)
    run.start()
    assert run.task("a").input == {}


def test_diamond_runs_in_parallel_and_joins() -> None:
    run = Run.of(DIAMOND)
    run.start()
    assert set(run.tasks) == {"ex1:a:1"}
    run.ok("a", 1)
    assert {t.step_id for t in run.tasks.values()} == {"b", "c"}
    run.ok("b", 2)
    assert run.status("d") is StepStatus.PENDING
    run.ok("c", 3)
    assert {t.step_id for t in run.tasks.values()} == {"d"}
    run.ok("d", 4)
    assert run.st.status is ExecutionStatus.COMPLETED
    assert run.st.output == {"d": 4}


def test_task_ids_are_unique_per_dispatch() -> None:
    run = Run.of(DIAMOND)
    run.start()
    run.drive(succeed())
    ids = [t.id for t in run.dispatched]
    assert len(ids) == len(set(ids)) == 4


def test_input_template_and_step_outputs_in_scope() -> None:
    run = Run.of(
        """
        name: scoped
        version: "1"
        steps:
          - id: validate-user
            function: validate
            input: {email: "${input.email}"}
          - id: create
            function: create
            depends_on: [validate-user]
            input:
              email: "${steps.validate-user.output.email}"
              status: "${steps.validate-user.status}"
              run: "${execution.id} of ${workflow.name}@${workflow.version}"
        output:
          user: "${steps.create.output.id}"
        """
    )
    run.start({"email": "A@B.C"})
    assert run.task("validate-user").input == {"email": "A@B.C"}
    run.ok("validate-user", {"email": "a@b.c"})
    assert run.task("create").input == {
        "email": "a@b.c",
        "status": "completed",
        "run": "ex1 of scoped@1",
    }
    run.ok("create", {"id": 42})
    assert run.st.output == {"user": 42}


@pytest.mark.parametrize(
    ("plan_value", "expected"),
    [("pro", StepStatus.RUNNING), ("free", StepStatus.SKIPPED)],
)
def test_condition_false_skips_and_skipped_satisfies(plan_value: str, expected: StepStatus) -> None:
    run = Run.of(
        """
        name: cond
        version: "1"
        steps:
          - id: a
            function: fa
            condition: ${input.plan == 'pro'}
          - id: b
            function: fb
            depends_on: [a]
        """
    )
    run.start({"plan": plan_value})
    assert run.status("a") is expected
    if expected is StepStatus.SKIPPED:
        assert run.st.steps["a"].output is None
        assert "step.skipped" in run.kinds()
        assert run.status("b") is StepStatus.RUNNING
    run.drive(succeed())
    assert run.st.status is ExecutionStatus.COMPLETED


def test_long_chain_of_skipped_steps_does_not_recurse() -> None:
    steps = "\n".join(
        f"  - id: s{i}\n    function: f\n    condition: ${{false}}\n"
        + (f"    depends_on: [s{i - 1}]\n" if i else "")
        for i in range(1000)
    )
    run = Run(plan_of(f'name: chain\nversion: "1"\nsteps:\n{steps}'))
    run.start()
    assert run.st.status is ExecutionStatus.COMPLETED
    assert all(s.status is StepStatus.SKIPPED for s in run.st.steps.values())


def test_condition_evaluation_error_fails_the_step_clearly() -> None:
    run = Run.of(
        """
        name: cond
        version: "1"
        steps:
          - id: a
            function: fa
            condition: ${input.missing.deeper}
        """
    )
    run.start({})
    st = run.st
    assert st.steps["a"].status is StepStatus.FAILED
    assert st.status is ExecutionStatus.FAILED
    assert st.error is not None
    assert st.error.type == "EvaluationError"
    assert st.error.step_id == "a"
    assert "condition of step 'a'" in st.error.message
    assert run.dispatched == []


def test_input_evaluation_error_fails_the_step_not_the_engine() -> None:
    run = Run.of(
        """
        name: bad-input
        version: "1"
        steps:
          - id: a
            function: fa
            input: {n: "${input.n + 1}"}
        """
    )
    run.start({"n": "text"})
    assert run.st.status is ExecutionStatus.FAILED
    assert run.st.error is not None
    assert "input of step 'a'" in run.st.error.message


def test_continue_on_failure_counts_as_satisfied() -> None:
    run = Run.of(
        """
        name: cof
        version: "1"
        defaults:
          retry_config: {max_attempts: 1}
        steps:
          - id: a
            function: fa
            continue_on_failure: true
          - id: b
            function: fb
            depends_on: [a]
            input: {a_status: "${steps.a.status}"}
        """
    )
    run.start()
    run.fail("a")
    assert run.status("a") is StepStatus.FAILED
    assert run.task("b").input == {"a_status": "failed"}
    run.ok("b", "done")
    assert run.st.status is ExecutionStatus.COMPLETED
    assert run.st.error is None


def test_failure_stops_scheduling_and_cancels_in_flight() -> None:
    run = Run.of(
        """
        name: fail
        version: "1"
        defaults:
          retry_config: {max_attempts: 1}
        steps:
          - id: a
            function: fa
          - id: b
            function: fb
          - id: c
            function: fc
            depends_on: [a]
        """
    )
    run.start()
    b_task = run.task("b")
    run.fail("a", error("KeyError", "no such key"))
    st = run.st
    assert st.status is ExecutionStatus.FAILED
    assert st.error is not None
    assert (st.error.type, st.error.message, st.error.step_id) == ("KeyError", "no such key", "a")
    assert run.status("b") is StepStatus.CANCELLED
    assert b_task.id in run.cancelled_tasks
    assert run.status("c") is StepStatus.PENDING
    assert run.tasks == {}


def test_output_evaluation_error_fails_the_execution() -> None:
    run = Run.of(
        """
        name: out
        version: "1"
        output: {x: "${steps.a.output.nope}"}
        steps:
          - id: a
            function: fa
        """
    )
    run.start()
    run.ok("a", {"yes": 1})
    assert run.st.status is ExecutionStatus.FAILED
    assert run.st.error is not None
    assert run.st.error.type == "EvaluationError"
    assert run.st.error.step_id is None


def test_duplicate_and_unknown_results_are_dropped() -> None:
    run = Run.of(DIAMOND)
    run.start()
    task = run.task("a")
    run.ok("a", 1)
    before = run.st.steps["a"]
    message = ResultMessage(
        task_id=task.id, execution_id="ex1", step_id="a", status="failed", error=error()
    )
    assert run.send(TaskResult(result=message)) == []
    assert run.st.steps["a"] is before
    assert before.status is StepStatus.COMPLETED
    stranger = ResultMessage(task_id="nope", execution_id="ex1", step_id="b", status="completed")
    assert run.send(TaskResult(result=stranger)) == []


def test_duplicate_start_is_ignored() -> None:
    run = Run.of(ONE)
    run.start()
    assert run.start() == []


def test_event_without_state_is_total() -> None:
    plan = plan_of(ONE)
    message = ResultMessage(task_id="t", execution_id="zz", step_id="a", status="completed")
    from magicflow.engine.machine import decide

    decision = decide(None, TaskResult(result=message), plan, 0.0, {})
    assert decision.commands == []
    assert isinstance(decision.state, ExecutionState)
    assert decision.state.status is ExecutionStatus.PENDING
    assert decide(decision.state, Start(execution_id="x"), plan, 0.0, {}).state.id == "zz"


def test_queue_and_timeout_reach_the_task() -> None:
    run = Run.of(
        """
        name: q
        version: "1"
        timeout: 1m
        steps:
          - id: a
            function: fa
            queue: email
            timeout: 10s
        """
    )
    run.start()
    task = run.task("a")
    assert task.queue == "email"
    assert task.timeout == 10.0
    assert task.deadline == run.now + 60

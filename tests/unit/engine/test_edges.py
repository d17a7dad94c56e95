"""Corners of the rules: timeouts of fallbacks and compensations, breakers under fan-out,
signals to several waiters, sub-workflow fan-out, pause with fan-out and sleep, and the
interplay of deadline, compensation and retry."""

from __future__ import annotations

from magicflow.engine.model import (
    BreakerState,
    ExecutionStatus,
    NotifyParent,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    StepStatus,
)

from .harness import Run, error


def test_a_timed_out_fallback_call_moves_to_the_next_option() -> None:
    run = Run.of(
        """
        name: fbt
        version: "1"
        steps:
          - id: a
            function: fa
            timeout: 5s
            retry_config: {max_attempts: 1}
            fallback: [{function: slow}, {output: {ok: false}}]
        """
    )
    run.start()
    run.fail("a")
    slow = run.task("a")
    assert slow.function == "slow"
    run.fire("timeout:")
    assert slow.id in run.cancelled_tasks
    ss = run.st.steps["a"]
    assert (ss.status, ss.output, ss.fallback_used) == (
        StepStatus.COMPLETED,
        {"ok": False},
        True,
    )


def test_a_timed_out_compensation_counts_as_a_failed_one() -> None:
    run = Run.of(
        """
        name: ct
        version: "1"
        steps:
          - id: a
            function: fa
            timeout: 5s
            retry_config: {max_attempts: 1}
            compensation: {function: undo}
          - id: b
            function: fb
            depends_on: [a]
            retry_config: {max_attempts: 1}
        """
    )
    run.start()
    run.ok("a", 1)
    run.fail("b")
    undo = run.task("a")
    run.fire("timeout:")
    assert undo.id in run.cancelled_tasks
    st = run.st
    assert st.status is ExecutionStatus.FAILED
    assert st.steps["a"].error is not None
    assert st.steps["a"].error.type == "TimeoutError"


def test_deadline_during_compensation_lets_it_finish() -> None:
    run = Run.of(
        """
        name: dc
        version: "1"
        timeout: 1m
        steps:
          - id: a
            function: fa
            compensation: {function: undo}
          - id: b
            function: fb
            depends_on: [a]
            retry_config: {max_attempts: 1}
        """
    )
    run.start()
    run.ok("a", 1)
    run.fail("b")
    undo = run.task("a")
    run.fire("deadline:")
    assert run.outcome() is ExecutionStatus.RUNNING
    run.result(undo, ("ok", None))
    assert run.outcome() is ExecutionStatus.FAILED
    assert run.st.steps["a"].status is StepStatus.COMPENSATED


def test_a_fan_out_sees_its_own_breaker_updates() -> None:
    run = Run.of(
        """
        name: cbf
        version: "1"
        steps:
          - id: each
            function: flaky
            for_each: ${[1, 2, 3]}
            circuit_breaker: {failure_threshold: 1, timeout: 10s, half_open_max_calls: 1}
            fallback: {output: degraded}
        """,
        breakers={"flaky": BreakerState(state="open", failures=1, opened_at=900.0)},
    )
    run.start()
    # the first item is the half-open probe; the second is refused: the step falls back
    assert run.breakers["flaky"].state == "half_open"
    ss = run.st.steps["each"]
    assert (ss.status, ss.output, ss.fallback_used) == (StepStatus.COMPLETED, "degraded", True)
    assert len(run.dispatched) == 1
    assert run.dispatched[0].id in run.cancelled_tasks


def test_one_signal_completes_every_step_waiting_for_it() -> None:
    run = Run.of(
        """
        name: sig
        version: "1"
        steps:
          - id: w1
            wait_for: go
          - id: w2
            wait_for: go
        """
    )
    run.start()
    run.signal("go", {"n": 1})
    assert run.st.steps["w1"].output == run.st.steps["w2"].output == {"n": 1}
    assert run.outcome() is ExecutionStatus.COMPLETED


def test_buffered_signals_are_taken_in_arrival_order() -> None:
    run = Run.of(
        """
        name: sig
        version: "1"
        steps:
          - id: first
            function: f
          - id: w1
            wait_for: go
            depends_on: [first]
          - id: w2
            wait_for: go
            depends_on: [w1]
        """
    )
    run.start()
    run.signal("go", 1)
    run.signal("go", 2)
    run.ok("first")
    assert run.st.steps["w1"].output == 1
    assert run.st.steps["w2"].output == 2
    assert run.outcome() is ExecutionStatus.COMPLETED


def test_sub_workflow_fan_out() -> None:
    run = Run.of(
        """
        name: fan-children
        version: "1"
        steps:
          - id: checks
            workflow: kyc
            for_each: ${input.people}
            max_parallel: 2
            retry_config: {max_attempts: 2, strategy: fixed, initial_interval: 1s}
        """
    )
    run.start({"people": ["ann", "bob", "cy"]})
    assert len(run.children) == 2
    first, second = run.children
    assert run.children[first].input == "ann"
    assert run.children[first].version is None
    run.child_done(second, output="B")
    third = list(run.children)[-1]
    assert run.children[third].input == "cy"
    run.child_done(first, ExecutionStatus.FAILED, err=error())
    run.fire("retry:")
    again = list(run.children)[-1]
    assert run.children[again].input == "ann"
    run.child_done(again, output="A")
    run.child_done(third, output="C")
    assert run.st.steps["checks"].output == ["A", "B", "C"]
    assert run.outcome() is ExecutionStatus.COMPLETED


def test_pause_holds_fan_out_and_sleep_still_ends() -> None:
    run = Run.of(
        """
        name: pf
        version: "1"
        steps:
          - id: nap
            sleep: 1s
          - id: each
            function: f
            for_each: ${[0, 1, 2]}
            max_parallel: 1
        """
    )
    run.start()
    run.send(PauseRequested())
    run.ok("each", "x0", index=0)
    assert run.tasks == {}  # no next item while paused
    run.fire("sleep:")
    assert run.status("nap") is StepStatus.COMPLETED
    run.send(ResumeRequested())
    run.ok("each", "x1", index=1)
    run.ok("each", "x2", index=2)
    assert run.outcome() is ExecutionStatus.COMPLETED
    assert run.st.steps["each"].output == ["x0", "x1", "x2"]


def test_retry_request_reruns_compensated_steps() -> None:
    run = Run.of(
        """
        name: rc
        version: "1"
        steps:
          - id: a
            function: fa
            compensation: {function: undo}
          - id: b
            function: fb
            depends_on: [a]
            retry_config: {max_attempts: 1}
        """
    )
    run.start()
    run.ok("a", "A1")
    run.fail("b")
    run.ok("a")  # the compensation
    assert run.status("a") is StepStatus.COMPENSATED
    run.send(RetryRequested())
    assert run.task("a").function == "fa"
    run.ok("a", "A2")
    run.ok("b", "B")
    assert run.outcome() is ExecutionStatus.COMPLETED
    assert run.st.steps["a"].output == "A2"


def test_a_failed_child_tells_its_parent_why() -> None:
    run = Run.of(
        """
        name: kid
        version: "1"
        steps:
          - id: a
            function: fa
            retry_config: {max_attempts: 1}
        """,
        execution_id="p.step.1",
    )
    run.start(parent_id="p", parent_step_id="step")
    commands = run.fail("a", error("KycError", "rejected"))
    [notify] = [c for c in commands if isinstance(c, NotifyParent)]
    assert notify.event.status is ExecutionStatus.FAILED
    assert notify.event.error is not None
    assert notify.event.error.type == "KycError"


def test_lifecycle_events_are_emitted() -> None:
    run = Run.of(
        """
        name: ev
        version: "1"
        steps:
          - id: a
            function: fa
            retry_config: {max_attempts: 2, strategy: fixed, initial_interval: 1s}
          - id: b
            function: fb
            condition: ${false}
        """
    )
    run.start()
    run.fail("a")
    run.fire("retry:")
    run.ok("a")
    assert run.kinds() == [
        "execution.started",
        "step.started",
        "step.skipped",
        "step.retrying",
        "step.completed",
        "execution.completed",
    ]
    retrying = run.events[3]
    assert retrying.step_id == "a"
    assert retrying.data["attempt"] == 1
    assert retrying.data["error"] == "Boom"
    assert 0.0 <= retrying.data["delay"] < 1.0  # full jitter of a 1 s interval


def test_pause_holds_a_fallback_call_until_resume() -> None:
    run = Run.of(
        """
        name: pfb
        version: "1"
        steps:
          - id: a
            function: fa
            retry_config: {max_attempts: 1}
            fallback: {function: plan_b}
        """
    )
    run.start()
    run.send(PauseRequested())
    run.fail("a")
    assert run.status("a") is StepStatus.SCHEDULED
    assert run.tasks == {}
    run.send(ResumeRequested())
    backup = run.task("a")
    assert (backup.function, backup.step_type) == ("plan_b", "fallback")
    run.result(backup, ("ok", "b"))
    assert run.outcome() is ExecutionStatus.COMPLETED
    assert run.st.steps["a"].fallback_used


def test_resume_does_not_refill_a_fan_out_that_went_to_its_fallback() -> None:
    run = Run.of(
        """
        name: pff
        version: "1"
        steps:
          - id: each
            function: f
            for_each: ${[0, 1, 2, 3]}
            max_parallel: 1
            retry_config: {max_attempts: 1}
            fallback: {function: plan_b}
        """
    )
    run.start()
    run.fail("each", index=0)
    backup = run.task("each")
    assert backup.step_type == "fallback"
    run.send(PauseRequested())
    run.send(ResumeRequested())
    assert list(run.tasks) == [backup.id]
    run.result(backup, ("ok", "b"))
    assert run.outcome() is ExecutionStatus.COMPLETED


def test_resume_does_not_refill_a_fan_out_whose_timeout_went_to_the_fallback() -> None:
    run = Run.of(
        """
        name: pft
        version: "1"
        steps:
          - id: each
            function: f
            for_each: ${[0, 1]}
            max_parallel: 1
            timeout: 5s
            timeout_action: fallback
            fallback: {function: plan_b}
        """
    )
    run.start()
    run.fire("timeout:")
    backup = run.task("each")
    run.send(PauseRequested())
    run.send(ResumeRequested())
    assert list(run.tasks) == [backup.id]
    run.result(backup, ("ok", "b"))
    assert run.outcome() is ExecutionStatus.COMPLETED

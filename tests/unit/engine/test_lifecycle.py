"""Compensation, deadline, cancel, pause/resume, retry, recover, sub-workflows, signals, sleep."""

from __future__ import annotations

from magicflow.engine.model import (
    CancelRequested,
    DispatchTask,
    ExecutionStatus,
    NotifyParent,
    PauseRequested,
    Recover,
    ResumeRequested,
    RetryRequested,
    StepStatus,
)

from .harness import Run, error, succeed

SAGA = """
name: saga
version: "1"
defaults:
  retry_config: {strategy: fixed, max_attempts: 2, initial_interval: 1s, jitter: false}
steps:
  - id: reserve
    function: reserve
    input: {sku: "${input.sku}"}
    compensation: {function: release}
  - id: charge
    function: charge
    depends_on: [reserve]
    compensation:
      function: refund
      input: {charge_id: "${steps.charge.output.id}"}
  - id: plain
    function: noop
    depends_on: [reserve]
  - id: ship
    function: ship
    depends_on: [charge, plain]
    retry_config: {max_attempts: 1}
"""


def saga_until_ship_fails() -> Run:
    run = Run.of(SAGA)
    run.start({"sku": "s1"})
    run.ok("reserve", {"r": 1})
    run.ok("charge", {"id": "ch_9"})
    run.ok("plain", None)
    run.fail("ship", error("ShipError", "no truck"))
    return run


def test_compensation_runs_in_reverse_completion_order_one_at_a_time() -> None:
    run = saga_until_ship_fails()
    assert run.st.status is ExecutionStatus.RUNNING  # compensating
    refund = run.task("charge")
    assert (refund.function, refund.step_type, refund.input) == (
        "refund",
        "compensation",
        {"charge_id": "ch_9"},
    )
    assert refund.deadline is None  # compensation is not bounded by the workflow deadline
    assert len(run.tasks) == 1
    run.result(refund, ("ok", None))
    assert run.status("charge") is StepStatus.COMPENSATED
    release = run.task("reserve")
    assert (release.function, release.input) == ("release", {"sku": "s1"})
    run.result(release, ("ok", None))
    st = run.st
    assert st.status is ExecutionStatus.FAILED
    assert st.error is not None
    assert (st.error.type, st.error.step_id) == ("ShipError", "ship")
    assert run.status("reserve") is StepStatus.COMPENSATED
    assert run.status("plain") is StepStatus.COMPLETED
    assert run.kinds().count("step.compensated") == 2


def test_failing_compensation_is_retried_then_recorded_and_the_next_runs() -> None:
    run = saga_until_ship_fails()
    run.fail("charge")
    run.fire("compensate:")
    retried = run.task("charge")
    assert retried.attempt == 2
    run.result(retried, ("fail", error("RefundError", "nope")))
    ss = run.st.steps["charge"]
    assert ss.status is StepStatus.COMPLETED
    assert ss.error is not None
    assert "compensation failed" in ss.error.message
    assert run.task("reserve").function == "release"
    run.ok("reserve")
    assert run.st.status is ExecutionStatus.FAILED
    assert run.st.steps["charge"].attempts == 1  # compensation calls are not attempts


def test_user_cancel_does_not_compensate() -> None:
    run = Run.of(SAGA)
    run.start({"sku": "s1"})
    run.ok("reserve", {"r": 1})
    charge = run.task("charge")
    run.send(CancelRequested(reason="user said so"))
    st = run.st
    assert st.status is ExecutionStatus.CANCELLED
    assert st.error is not None
    assert st.error.message == "user said so"
    assert charge.id in run.cancelled_tasks
    assert run.status("charge") is StepStatus.CANCELLED
    assert run.status("reserve") is StepStatus.COMPLETED
    assert all(t.step_type != "compensation" for t in run.dispatched)
    assert run.timers == {}


DEADLINE = """
name: dl
version: "1"
timeout: 1m
timeout_action: {action}
steps:
  - id: a
    function: fa
    compensation: {{function: undo}}
  - id: b
    function: fb
    depends_on: [a]
  - id: c
    function: fc
    depends_on: [b]
"""


def test_deadline_fail_cancels_compensates_and_times_out() -> None:
    run = Run.of(DEADLINE.format(action="fail"))
    run.start()
    assert run.timers == {"deadline:1": run.now + 60}
    run.ok("a", 1)
    b = run.task("b")
    run.fire("deadline:")
    assert b.id in run.cancelled_tasks
    assert run.status("b") is StepStatus.CANCELLED
    assert run.task("a").function == "undo"
    run.ok("a")
    st = run.st
    assert st.status is ExecutionStatus.TIMED_OUT
    assert st.error is not None
    assert st.error.type == "DeadlineExceeded"


def test_deadline_cancel_ends_cancelled_without_compensation() -> None:
    run = Run.of(DEADLINE.format(action="cancel"))
    run.start()
    run.ok("a", 1)
    run.fire("deadline:")
    assert run.st.status is ExecutionStatus.CANCELLED
    assert run.tasks == {}


def test_child_inherits_the_shorter_deadline() -> None:
    run = Run.of(DEADLINE.format(action="fail"))
    run.start(deadline=run.now + 10)
    assert run.st.deadline == run.now + 10
    assert run.task("a").deadline == run.now + 10


def test_pause_holds_new_work_and_resume_dispatches_it() -> None:
    run = Run.of(
        """
        name: p
        version: "1"
        steps:
          - id: a
            function: fa
            retry_config: {strategy: fixed, initial_interval: 1s}
          - id: b
            function: fb
          - id: c
            function: fc
            depends_on: [a]
        """
    )
    run.start()
    run.send(PauseRequested())
    assert run.st.status is ExecutionStatus.PAUSED
    run.ok("a", 1)  # results are still applied
    assert run.status("a") is StepStatus.COMPLETED
    assert run.status("c") is StepStatus.PENDING  # but nothing new starts
    run.fail("b")
    run.fire("retry:")
    assert run.status("b") is StepStatus.SCHEDULED  # the retry is held
    assert run.tasks == {}
    run.send(ResumeRequested())
    assert run.outcome() is ExecutionStatus.RUNNING
    assert {t.step_id for t in run.tasks.values()} == {"b", "c"}
    assert run.task("b").attempt == 2
    run.drive(succeed())
    assert run.outcome() is ExecutionStatus.COMPLETED
    assert run.kinds().count("execution.paused") == run.kinds().count("execution.resumed") == 1


def test_retry_request_reruns_failed_steps_and_keeps_completed_outputs() -> None:
    run = Run.of(
        """
        name: r
        version: "1"
        timeout: 1h
        steps:
          - id: a
            function: fa
          - id: b
            function: fb
            depends_on: [a]
            retry_config: {max_attempts: 1}
          - id: c
            function: fc
            depends_on: [b]
        """
    )
    run.start()
    run.ok("a", "A")
    run.fail("b")
    assert run.st.status is ExecutionStatus.FAILED
    run.now += 5000
    run.send(RetryRequested())
    st = run.st
    assert st.status is ExecutionStatus.RUNNING
    assert st.error is None
    assert st.deadline == run.now + 3600
    assert st.steps["a"].output == "A"
    assert st.steps["b"].attempts == 1
    assert run.task("b").attempt == 1
    run.drive(succeed())
    assert run.outcome() is ExecutionStatus.COMPLETED
    assert run.st.steps["a"].attempts == 1


def test_retry_request_is_ignored_unless_the_execution_failed() -> None:
    run = Run.of(DEADLINE.format(action="fail"))
    run.start()
    assert run.send(RetryRequested()) == []


def test_recover_redispatches_awaited_tasks_with_the_same_ids() -> None:
    run = Run.of(DEADLINE.format(action="fail"))
    run.start()
    task = run.task("a")
    commands = run.send(Recover())
    assert commands == [DispatchTask(task=task)]


SUB = """
name: parent
version: "1"
timeout: 10m
steps:
  - id: kyc
    workflow: kyc-check@1.0.0
    input: {email: "${input.email}"}
    retry_config: {strategy: fixed, max_attempts: 2, initial_interval: 1s}
"""


def test_sub_workflow_starts_a_child_and_takes_its_output() -> None:
    run = Run.of(SUB)
    run.start({"email": "e"})
    [(child_id, start)] = run.children.items()
    assert child_id == "ex1.kyc.2"
    assert (start.workflow, start.version, start.input) == ("kyc-check", "1.0.0", {"email": "e"})
    assert start.deadline == run.now + 600
    run.child_done(child_id, output={"ok": True})
    assert run.st.steps["kyc"].output == {"ok": True}
    assert run.st.status is ExecutionStatus.COMPLETED


def test_failed_child_is_retried_with_a_new_child() -> None:
    run = Run.of(SUB)
    run.start({"email": "e"})
    first = next(iter(run.children))
    run.child_done(first, ExecutionStatus.FAILED, err=error("KycError", "rejected"))
    run.fire("retry:")
    assert len(run.children) == 2
    second = next(c for c in run.children if c != first)
    assert run.child_done(first, output="stale") == []
    run.child_done(second, ExecutionStatus.TIMED_OUT)
    st = run.st
    assert st.status is ExecutionStatus.FAILED
    assert st.error is not None
    assert st.error.type == "ChildWorkflowError"


def test_cancel_cancels_the_child() -> None:
    run = Run.of(SUB)
    run.start({"email": "e"})
    child = next(iter(run.children))
    run.send(CancelRequested())
    assert run.cancelled_children == [child]


def test_a_child_notifies_its_parent_when_it_ends() -> None:
    run = Run.of(DEADLINE.format(action="fail"), execution_id="p.kyc.2")
    run.start(parent_id="p", parent_step_id="kyc")
    run.ok("a", 1)
    run.ok("b", 2)
    commands = run.ok("c", {"done": 1})
    [notify] = [c for c in commands if isinstance(c, NotifyParent)]
    assert notify.parent_id == "p"
    event = notify.event
    assert (event.child_id, event.parent_step_id, event.status, event.output) == (
        "p.kyc.2",
        "kyc",
        ExecutionStatus.COMPLETED,
        {"c": {"done": 1}},
    )


SIGNALS = """
name: approve
version: "1"
steps:
  - id: prepare
    function: prepare
  - id: approval
    wait_for: approval
    depends_on: [prepare]
    timeout: 1h
    timeout_action: {action}
  - id: after
    function: after
    depends_on: [approval]
    input: {{decision: "${{steps.approval.output.ok}}"}}
"""


def test_wait_for_completes_with_the_signal_payload() -> None:
    run = Run.of(SIGNALS.format(action="fail"))
    run.start()
    run.ok("prepare")
    assert run.status("approval") is StepStatus.WAITING
    run.signal("approval", {"ok": True})
    assert run.st.steps["approval"].output == {"ok": True}
    assert run.task("after").input == {"decision": True}
    assert not any(k.startswith("timeout:") for k in run.timers)


def test_an_early_signal_is_buffered_not_lost() -> None:
    run = Run.of(SIGNALS.format(action="fail"))
    run.start()
    run.signal("approval", {"ok": "early"})
    assert run.st.signals == {"approval": [{"ok": "early"}]}
    run.ok("prepare")
    assert run.st.steps["approval"].output == {"ok": "early"}
    assert run.st.signals == {}


def test_a_signal_nobody_waits_for_is_ignored() -> None:
    run = Run.of(SIGNALS.format(action="fail"))
    run.start()
    assert run.signal("other", 1) == []
    assert run.st.signals == {}


def test_wait_timeout_applies() -> None:
    run = Run.of(SIGNALS.format(action="skip"))
    run.start()
    run.ok("prepare")
    run.fire("timeout:")
    assert run.status("approval") is StepStatus.SKIPPED
    assert run.signal("approval", {"ok": True}) == []  # too late, nobody will wait


def test_sleep_is_a_durable_timer() -> None:
    run = Run.of(
        """
        name: nap
        version: "1"
        steps:
          - id: cool-down
            sleep: 10m
          - id: go
            function: go
            depends_on: [cool-down]
        """
    )
    run.start()
    assert run.status("cool-down") is StepStatus.WAITING
    [(key, due)] = run.timers.items()
    assert key.startswith("sleep:cool-down:")
    assert due == run.now + 600
    run.fire("sleep:")
    assert run.st.steps["cool-down"].status is StepStatus.COMPLETED
    assert run.st.steps["cool-down"].output is None
    assert run.status("go") is StepStatus.RUNNING


def test_an_event_after_the_deadline_is_judged_after_it() -> None:
    run = Run.of(DEADLINE.format(action="fail"))
    run.start()
    task = run.task("a")
    run.now += 60  # the deadline is due, its timer has not fired yet
    run.result(task, ("fail", error("TimeoutError", "the execution's deadline")))
    st = run.st
    assert st.status is ExecutionStatus.TIMED_OUT
    assert st.error is not None
    assert st.error.type == "DeadlineExceeded"
    assert run.status("a") is StepStatus.CANCELLED
    assert run.timers == {}

"""Retries and backoff, fallback chains, step timeouts and their actions."""

from __future__ import annotations

import pytest

from magicflow.engine.model import (
    CancelTask,
    CancelTimer,
    DispatchTask,
    ExecutionStatus,
    StartTimer,
    StepStatus,
    TimerFired,
)

from .harness import Run, error

RETRY = """
name: retry
version: "1"
steps:
  - id: a
    function: fa
    retry_config:
      strategy: fixed
      max_attempts: 3
      initial_interval: 2s
      jitter: false
      non_retryable_errors: [ValidationError]
"""


def test_failed_attempt_backs_off_then_dispatches_again() -> None:
    run = Run.of(RETRY)
    run.start()
    commands = run.fail("a")
    [timer] = [c for c in commands if isinstance(c, StartTimer)]
    assert timer.key.startswith("retry:a:-:")
    assert timer.due == run.now + 2.0
    assert not [c for c in commands if isinstance(c, DispatchTask)]
    assert run.status("a") is StepStatus.RUNNING
    assert "step.retrying" in run.kinds()
    run.fire("retry:")
    second = run.task("a")
    assert second.attempt == 2
    assert second.id != run.dispatched[0].id
    run.ok("a", "fine")
    st = run.st
    assert st.status is ExecutionStatus.COMPLETED
    assert st.steps["a"].attempts == 2
    assert st.steps["a"].error is None


def test_attempts_are_exhausted_then_the_step_fails() -> None:
    run = Run.of(RETRY)
    run.start()
    for _ in range(2):
        run.fail("a")
        run.fire("retry:")
    run.fail("a", error("IOError", "disk"))
    st = run.st
    assert st.steps["a"].status is StepStatus.FAILED
    assert st.steps["a"].attempts == 3
    assert st.status is ExecutionStatus.FAILED
    assert st.error is not None
    assert st.error.type == "IOError"
    assert run.timers == {}


@pytest.mark.parametrize(
    "err",
    [error("ValidationError", "bad"), error("Whatever", "stop", non_retryable=True)],
    ids=["listed-type", "non-retryable-flag"],
)
def test_non_retryable_errors_skip_remaining_attempts(err: object) -> None:
    run = Run.of(RETRY)
    run.start()
    run.fail("a", err)  # type: ignore[arg-type]
    assert run.st.steps["a"].attempts == 1
    assert run.st.status is ExecutionStatus.FAILED


def test_exponential_backoff_delays_grow_and_cap() -> None:
    run = Run.of(
        """
        name: expo
        version: "1"
        steps:
          - id: a
            function: fa
            retry_config:
              strategy: exponential
              max_attempts: 5
              initial_interval: 1s
              max_interval: 5s
              multiplier: 3
              jitter: false
        """
    )
    run.start()
    delays = []
    for _ in range(4):
        run.fail("a")
        _key, due = run.next_timer()  # type: ignore[misc]
        delays.append(due - run.now)
        run.fire("retry:")
    assert delays == [1.0, 3.0, 5.0, 5.0]


def test_jitter_is_deterministic_and_within_bounds() -> None:
    text = """
    name: jit
    version: "1"
    steps:
      - id: a
        function: fa
        retry_config: {strategy: fixed, initial_interval: 10s, jitter: true}
    """
    dues = []
    for _ in range(2):
        run = Run.of(text)
        run.start()
        run.fail("a")
        dues.append(run.timers)
    assert dues[0] == dues[1]
    [due] = dues[0].values()
    assert 1000.0 <= due < 1010.0


FALLBACKS = """
name: fb
version: "1"
defaults:
  retry_config: {max_attempts: 1}
steps:
  - id: a
    function: fa
    input: {x: 1}
    fallback:
      - function: plan_b
      - function: plan_c
        input: {why: "${input.why}"}
      - output: {degraded: true}
"""


def test_fallback_chain_tries_functions_then_output() -> None:
    run = Run.of(FALLBACKS)
    run.start({"why": "because"})
    run.fail("a")
    b = run.task("a")
    assert (b.function, b.step_type, b.input, b.attempt) == ("plan_b", "fallback", {"x": 1}, 1)
    run.result(b, ("fail", error()))
    c = run.task("a")
    assert (c.function, c.input) == ("plan_c", {"why": "because"})
    run.result(c, ("fail", error()))
    st = run.st
    assert st.steps["a"].status is StepStatus.COMPLETED
    assert st.steps["a"].output == {"degraded": True}
    assert st.steps["a"].fallback_used
    assert st.steps["a"].attempts == 1
    assert st.status is ExecutionStatus.COMPLETED


def test_fallback_function_success_completes_the_step() -> None:
    run = Run.of(FALLBACKS)
    run.start({"why": "x"})
    run.fail("a")
    run.ok("a", {"from": "plan_b"})
    ss = run.st.steps["a"]
    assert (ss.status, ss.output, ss.fallback_used) == (
        StepStatus.COMPLETED,
        {"from": "plan_b"},
        True,
    )


def test_exhausted_fallback_chain_fails_with_the_step_error() -> None:
    run = Run.of(
        """
        name: fb
        version: "1"
        defaults:
          retry_config: {max_attempts: 1}
        steps:
          - id: a
            function: fa
            fallback: {function: plan_b}
        """
    )
    run.start()
    run.fail("a", error("Original", "first"))
    run.fail("a", error("Second", "second"))
    st = run.st
    assert st.steps["a"].status is StepStatus.FAILED
    assert st.error is not None
    assert st.error.type == "Original"


TIMEOUT = """
name: to
version: "1"
steps:
  - id: a
    function: fa
    timeout: 10s
    timeout_action: {action}
    retry_config: {{strategy: fixed, max_attempts: 2, initial_interval: 1s, jitter: false}}
    {extra}
  - id: b
    function: fb
    depends_on: [a]
"""


def _timeout_run(action: str, extra: str = "") -> Run:
    run = Run.of(TIMEOUT.format(action=action, extra=extra))
    run.start()
    return run


def test_step_timeout_timer_is_started_and_cancelled_on_result() -> None:
    run = _timeout_run("fail")
    [timer] = [k for k in run.timers if k.startswith("timeout:")]
    assert timer.startswith("timeout:a:-:")
    assert run.timers[timer] == run.now + 10
    commands = run.ok("a", 1)
    assert CancelTimer(key=timer) in commands


def test_timeout_fail_ends_step_timed_out_without_retry() -> None:
    run = _timeout_run("fail")
    task = run.task("a")
    commands = run.fire("timeout:")
    assert CancelTask(task_id=task.id, queue="default") in commands
    st = run.st
    assert st.steps["a"].status is StepStatus.TIMED_OUT
    assert st.steps["a"].attempts == 1
    assert st.status is ExecutionStatus.FAILED
    assert st.error is not None
    assert st.error.type == "TimeoutError"
    assert st.error.step_id == "a"


def test_timeout_retry_counts_the_attempt_and_retries() -> None:
    run = _timeout_run("retry")
    first = run.task("a")
    run.fire("timeout:")
    assert run.status("a") is StepStatus.RUNNING
    run.fire("retry:")
    second = run.task("a")
    assert second.attempt == 2
    # the late result of the timed-out attempt changes nothing
    before = run.st.steps["a"].attempts
    assert run.result(first, ("ok", "late")) == []
    assert run.st.steps["a"].attempts == before
    run.fire("timeout:")
    assert run.status("a") is StepStatus.FAILED
    assert run.st.status is ExecutionStatus.FAILED


def test_timeout_skip_skips_and_satisfies() -> None:
    run = _timeout_run("skip")
    run.fire("timeout:")
    assert run.status("a") is StepStatus.SKIPPED
    assert run.st.steps["a"].output is None
    assert run.status("b") is StepStatus.RUNNING


def test_timeout_fallback_uses_the_fallback() -> None:
    run = _timeout_run("fallback", "fallback: {output: {late: true}}")
    run.fire("timeout:")
    ss = run.st.steps["a"]
    assert (ss.status, ss.output, ss.fallback_used) == (
        StepStatus.COMPLETED,
        {"late": True},
        True,
    )
    assert run.status("b") is StepStatus.RUNNING


def test_stale_timer_changes_nothing() -> None:
    run = _timeout_run("fail")
    key = next(iter(run.timers))
    run.ok("a", 1)
    snapshot = run.st.steps["a"]
    assert run.send(TimerFired(key=key)) == []
    assert run.send(TimerFired(key="garbage")) == []
    assert run.send(TimerFired(key="timeout:nope:-:1")) == []
    assert run.send(TimerFired(key="timeout:a:x:1")) == []
    assert run.st.steps["a"] is snapshot


def test_refused_call_without_fallback_fails_with_circuit_open_error() -> None:
    text = """
    name: cb
    version: "1"
    steps:
      - id: a
        function: flaky
        retry_config: {max_attempts: 1}
        circuit_breaker: {failure_threshold: 1, timeout: 30s}
    """
    first = Run.of(text, execution_id="one")
    first.start()
    first.fail("a")
    assert first.breakers["flaky"].state == "open"
    second = Run.of(text, execution_id="two", breakers=dict(first.breakers))
    second.start()
    st = second.st
    assert second.dispatched == []
    assert st.steps["a"].status is StepStatus.FAILED
    assert st.steps["a"].attempts == 0
    assert st.error is not None
    assert st.error.type == "CircuitOpenError"


def test_refused_call_uses_the_fallback() -> None:
    text = """
    name: cb
    version: "1"
    steps:
      - id: a
        function: flaky
        circuit_breaker: {failure_threshold: 2, timeout: 30s}
        fallback: {output: {cached: true}}
    """
    from magicflow.engine.model import BreakerState

    run = Run.of(text, breakers={"flaky": BreakerState(state="open", opened_at=990.0)})
    run.start()
    ss = run.st.steps["a"]
    assert (ss.status, ss.output, ss.fallback_used) == (
        StepStatus.COMPLETED,
        {"cached": True},
        True,
    )
    # after the breaker timeout a probe goes through, and its success closes the breaker
    later = Run.of(text, now=1021.0, breakers=dict(run.breakers))
    later.start()
    assert later.breakers["flaky"].state == "half_open"
    later.ok("a", "real")
    assert later.breakers["flaky"].state == "closed"


def test_breaker_opens_after_consecutive_failures_within_one_execution() -> None:
    run = Run.of(
        """
        name: cb
        version: "1"
        steps:
          - id: a
            function: flaky
            retry_config: {max_attempts: 5, strategy: fixed, initial_interval: 1s}
            circuit_breaker: {failure_threshold: 2, timeout: 1m}
        """
    )
    run.start()
    run.fail("a")
    assert run.breakers["flaky"].failures == 1
    run.fire("retry:")
    run.fail("a")
    assert run.breakers["flaky"].state == "open"
    run.fire("retry:")
    st = run.st
    assert st.steps["a"].attempts == 2
    assert st.error is not None
    assert st.error.type == "CircuitOpenError"

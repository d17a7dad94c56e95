"""Pure policy decisions: breaker transitions, retry decisions, seeded jitter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from magicflow.dsl.plan import BreakerPolicy, RetryPolicy, RetryStrategy
from magicflow.engine.model import BreakerState
from magicflow.engine.policies import (
    breaker_admit,
    breaker_record,
    is_retryable,
    jitter,
    retry_delay,
    should_retry,
)
from magicflow.messages import ErrorInfo

POLICY = BreakerPolicy(failure_threshold=3, timeout=30.0, half_open_max_calls=2)
CLOSED = BreakerState()
OPEN = BreakerState(state="open", failures=3, opened_at=100.0)
HALF = BreakerState(state="half_open", failures=3, opened_at=130.0, half_open_calls=1)
HALF_FULL = BreakerState(state="half_open", failures=3, opened_at=130.0, half_open_calls=2)


@pytest.mark.parametrize(
    ("breaker", "now", "admitted", "after"),
    [
        (CLOSED, 0.0, True, CLOSED),
        (BreakerState(failures=2), 0.0, True, BreakerState(failures=2)),
        (OPEN, 129.9, False, OPEN),
        (OPEN, 130.0, True, HALF),
        (HALF, 131.0, True, HALF_FULL),
        (HALF_FULL, 131.0, False, HALF_FULL),
        # probes that never report back do not wedge it: after another timeout, a new probe
        (HALF_FULL, 160.0, True, replace(HALF, opened_at=160.0)),
    ],
    ids=[
        "closed",
        "closed-with-failures",
        "open-refuses",
        "open-after-timeout-probes",
        "half-open-room",
        "half-open-full",
        "half-open-stuck",
    ],
)
def test_breaker_admit(
    breaker: BreakerState, now: float, admitted: bool, after: BreakerState
) -> None:
    assert breaker_admit(breaker, POLICY, now) == (admitted, after)


@pytest.mark.parametrize(
    ("breaker", "success", "after"),
    [
        (CLOSED, True, CLOSED),
        (BreakerState(failures=2), True, CLOSED),
        (CLOSED, False, BreakerState(failures=1)),
        (BreakerState(failures=2), False, BreakerState(state="open", failures=3, opened_at=200.0)),
        (HALF, True, CLOSED),
        (HALF, False, BreakerState(state="open", failures=3, opened_at=200.0)),
        (OPEN, True, OPEN),
        (OPEN, False, OPEN),
    ],
    ids=[
        "closed-success",
        "success-resets-count",
        "first-failure",
        "threshold-opens",
        "half-open-success-closes",
        "half-open-failure-reopens",
        "open-success-ignored",
        "open-failure-ignored",
    ],
)
def test_breaker_record(breaker: BreakerState, success: bool, after: BreakerState) -> None:
    assert breaker_record(breaker, POLICY, 200.0, success=success) == after


def test_breaker_full_cycle() -> None:
    policy = BreakerPolicy(failure_threshold=2, timeout=10.0, half_open_max_calls=1)
    b = CLOSED
    for now in (1.0, 2.0):
        ok, b = breaker_admit(b, policy, now)
        assert ok
        b = breaker_record(b, policy, now, success=False)
    assert b.state == "open"
    assert breaker_admit(b, policy, 5.0)[0] is False
    ok, b = breaker_admit(b, policy, 12.0)
    assert ok
    assert b.state == "half_open"
    assert breaker_admit(b, policy, 12.5)[0] is False  # one probe at a time
    b = breaker_record(b, policy, 13.0, success=True)
    assert b == CLOSED


RETRY = RetryPolicy(max_attempts=3, non_retryable_errors=frozenset({"ValidationError"}))


@pytest.mark.parametrize(
    ("attempts", "error", "expected"),
    [
        (1, ErrorInfo(type="IOError", message=""), True),
        (2, ErrorInfo(type="IOError", message=""), True),
        (3, ErrorInfo(type="IOError", message=""), False),
        (1, ErrorInfo(type="ValidationError", message=""), False),
        (1, ErrorInfo(type="IOError", message="", non_retryable=True), False),
    ],
)
def test_should_retry(attempts: int, error: ErrorInfo, expected: bool) -> None:
    assert should_retry(RETRY, attempts, error) is expected


def test_is_retryable_reads_the_flag_and_the_list() -> None:
    assert is_retryable(RETRY, ErrorInfo(type="X", message=""))
    assert not is_retryable(RETRY, ErrorInfo(type="ValidationError", message=""))


@given(
    st.text(max_size=20),
    st.text(max_size=20),
    st.one_of(st.none(), st.integers(0, 10_000)),
    st.integers(1, 100),
)
def test_jitter_is_a_deterministic_unit_float(
    execution_id: str, step_id: str, index: int | None, attempt: int
) -> None:
    value = jitter(execution_id, step_id, index, attempt)
    assert 0.0 <= value < 1.0
    assert value == jitter(execution_id, step_id, index, attempt)


def test_jitter_spreads_attempts() -> None:
    values = {jitter("ex", "step", None, attempt) for attempt in range(1, 200)}
    assert len(values) > 190
    assert min(values) < 0.1
    assert max(values) > 0.9


@pytest.mark.parametrize(
    ("strategy", "delays"),
    [
        (RetryStrategy.FIXED, [2.0, 2.0, 2.0, 2.0]),
        (RetryStrategy.LINEAR, [2.0, 4.0, 6.0, 7.0]),
        (RetryStrategy.EXPONENTIAL, [2.0, 4.0, 7.0, 7.0]),
    ],
)
def test_retry_delay_without_jitter(strategy: RetryStrategy, delays: list[float]) -> None:
    policy = RetryPolicy(
        strategy=strategy, initial_interval=2.0, max_interval=7.0, multiplier=2.0, jitter=False
    )
    assert [retry_delay(policy, n, "ex", "s", None) for n in range(1, 5)] == delays


def test_retry_delay_with_jitter_is_full_jitter() -> None:
    policy = RetryPolicy(strategy=RetryStrategy.FIXED, initial_interval=8.0, jitter=True)
    delays = [retry_delay(policy, 1, f"ex{i}", "s", None) for i in range(100)]
    assert all(0.0 <= d < 8.0 for d in delays)
    assert len(set(delays)) > 90

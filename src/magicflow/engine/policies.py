"""Pure policy decisions: circuit-breaker transitions, retry decisions, seeded jitter.

Nothing here reads a clock or a random source: the time comes in as ``now`` and jitter is a
float in [0, 1) derived from the identity of the attempt, so replaying an execution gives the
same delays.

Circuit breaker (keyed by function name, shared by every execution)::

    closed ──(failure_threshold consecutive failures)──► open
    open ──(a call after ``timeout`` since opened_at)──► half_open   (that call is the probe)
    half_open ──(success)──► closed        half_open ──(failure)──► open (opened_at = now)

In ``half_open``, ``opened_at`` is the time it went half-open and at most
``half_open_max_calls`` calls are let through. If those probes never report back (their
execution was cancelled, say), a new probe is let through once ``timeout`` has passed again,
so a breaker can never be stuck half-open. A success reported while ``open`` (a call admitted
before it opened) changes nothing; every failed or timed-out call counts as a failure.
"""

from __future__ import annotations

import zlib

from magicflow.dsl.plan import BreakerPolicy, RetryPolicy
from magicflow.engine.model import BreakerState
from magicflow.messages import ErrorInfo

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

_CLOSED_STATE = BreakerState()


def breaker_admit(
    breaker: BreakerState, policy: BreakerPolicy, now: float
) -> tuple[bool, BreakerState]:
    """May a call go through now? Returns the decision and the breaker's new state."""
    if breaker.state == CLOSED:
        return True, breaker
    if breaker.state == OPEN:
        if now >= breaker.opened_at + policy.timeout:
            return True, _half_open(breaker, now)
        return False, breaker
    # half-open
    if breaker.half_open_calls < policy.half_open_max_calls:
        return True, BreakerState(
            state=HALF_OPEN,
            failures=breaker.failures,
            opened_at=breaker.opened_at,
            half_open_calls=breaker.half_open_calls + 1,
        )
    if now >= breaker.opened_at + policy.timeout:  # the probes never came back
        return True, _half_open(breaker, now)
    return False, breaker


def _half_open(breaker: BreakerState, now: float) -> BreakerState:
    return BreakerState(
        state=HALF_OPEN, failures=breaker.failures, opened_at=now, half_open_calls=1
    )


def breaker_record(
    breaker: BreakerState, policy: BreakerPolicy, now: float, *, success: bool
) -> BreakerState:
    """The breaker's state after a call it let through reported ``success`` or not."""
    if success:
        if breaker.state == HALF_OPEN or (breaker.state == CLOSED and breaker.failures):
            return _CLOSED_STATE
        return breaker
    if breaker.state == CLOSED:
        failures = breaker.failures + 1
        if failures >= policy.failure_threshold:
            return BreakerState(state=OPEN, failures=failures, opened_at=now)
        return BreakerState(failures=failures)
    if breaker.state == HALF_OPEN:
        return BreakerState(state=OPEN, failures=breaker.failures, opened_at=now)
    return breaker


def is_retryable(policy: RetryPolicy, error: ErrorInfo) -> bool:
    """An error may be retried unless it says so itself or its type is listed in the policy."""
    return not error.non_retryable and policy.is_retryable(error.type)


def should_retry(policy: RetryPolicy, attempts: int, error: ErrorInfo) -> bool:
    """After ``attempts`` calls, the last of which failed with ``error``: try again?"""
    return attempts < policy.max_attempts and is_retryable(policy, error)


def jitter(execution_id: str, step_id: str, index: int | None, attempt: int) -> float:
    """A float in [0, 1), the same every time for the same attempt (the seeded source)."""
    seed = f"{execution_id}\x00{step_id}\x00{index}\x00{attempt}".encode()
    return zlib.crc32(seed) / 4294967296.0


def retry_delay(
    policy: RetryPolicy, failed_attempt: int, execution_id: str, step_id: str, index: int | None
) -> float:
    """Seconds to wait before the attempt after ``failed_attempt``."""
    return policy.delay(failed_attempt, jitter(execution_id, step_id, index, failed_attempt))

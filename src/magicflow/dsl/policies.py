"""Effective policies: server defaults, then the workflow's ``defaults``, then the step.

``retry_config`` and ``circuit_breaker`` merge field by field; ``timeout``,
``timeout_action`` and ``queue`` are replaced. Inputs here are validated data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from magicflow.dsl.durations import parse_duration
from magicflow.dsl.plan import BreakerPolicy, RetryPolicy, RetryStrategy, TimeoutAction

__all__ = ["Defaults", "merge_breaker", "merge_defaults", "merge_retry"]


@dataclass(frozen=True, slots=True)
class Defaults:
    """The first layer of inheritance (server-wide), below the workflow's ``defaults``.

    With nothing configured: no step timeout, ``timeout_action: fail``, exponential retry
    (3 attempts, 1s, at most 1m, x2, jitter), no circuit breaker, queue ``default``.
    """

    timeout: float | None = None
    timeout_action: TimeoutAction = TimeoutAction.FAIL
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerPolicy | None = None
    queue: str = "default"


_DURATIONS = {"initial_interval", "max_interval", "timeout"}


def merge_retry(base: RetryPolicy, raw: Any) -> RetryPolicy:
    """``base`` with the fields that ``raw`` (a retry_config mapping) sets."""
    if not isinstance(raw, dict) or not raw:
        return base
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "strategy":
            changes[key] = RetryStrategy(value)
        elif key in _DURATIONS:
            changes[key] = parse_duration(value)
        elif key == "non_retryable_errors":
            changes[key] = frozenset(value)
        elif key == "multiplier":
            changes[key] = float(value)
        else:
            changes[key] = value
    return dataclasses.replace(base, **changes)


def merge_breaker(base: BreakerPolicy | None, raw: Any) -> BreakerPolicy | None:
    """``base`` (or the default breaker) with the fields that ``raw`` sets."""
    if not isinstance(raw, dict):
        return base
    changes: dict[str, Any] = {
        k: parse_duration(v) if k in _DURATIONS else v for k, v in raw.items()
    }
    return dataclasses.replace(base or BreakerPolicy(), **changes)


def merge_defaults(base: Defaults, raw: Any) -> Defaults:
    """The layer a workflow's steps inherit: ``base`` under the workflow's ``defaults``."""
    if not isinstance(raw, dict) or not raw:
        return base
    return Defaults(
        timeout=parse_duration(raw["timeout"]) if "timeout" in raw else base.timeout,
        timeout_action=TimeoutAction(raw.get("timeout_action", base.timeout_action)),
        retry=merge_retry(base.retry, raw.get("retry_config")),
        breaker=merge_breaker(base.breaker, raw.get("circuit_breaker")),
        queue=raw.get("queue", base.queue),
    )

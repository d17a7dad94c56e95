"""The workflows of the fault runs and what each execution of them must end as.

``orders``: three steps in a row; ``finish`` fails its first attempt when ``input.fail`` (one
execution in five), then succeeds on its retry: every execution completes, with attempts
(1, 1, 1) or (1, 1, 2), so an attempt too many or too few is visible.
"""

from __future__ import annotations

from typing import Any

ORDERS = """\
name: orders
version: "1"
defaults:
  queue: {queue}
steps:
  - id: reserve
    function: work
    input: {{ms: "${{input.ms}}"}}{step_extra}{retry}
  - id: charge
    function: work
    depends_on: [reserve]
    input: {{ms: "${{input.ms}}"}}{step_extra}{retry}
  - id: finish
    function: flaky
    depends_on: [charge]
    input: {{ms: "${{input.ms}}", fail: "${{input.fail}}"}}
    retry_config:
      strategy: fixed
      max_attempts: {max_attempts}
      initial_interval: 200ms
      jitter: false{step_extra}
"""


def orders(queue: str, *, step_timeout: str | None = None) -> str:
    """``step_timeout``: every step times out after it and is retried (up to 5 attempts: a
    stopped RabbitMQ consumer is still pushed tasks up to its prefetch, so a retry can land on
    it too while it is stopped)."""
    extra = retry = ""
    if step_timeout is not None:
        extra = f"\n    timeout: {step_timeout}\n    timeout_action: retry"
        retry = "\n    retry_config: {max_attempts: 5, initial_interval: 200ms, jitter: false}"
    max_attempts = 2 if step_timeout is None else 5
    return ORDERS.format(queue=queue, step_extra=extra, retry=retry, max_attempts=max_attempts)


def order_inputs(count: int, ms: int = 20, prefix: str = "order") -> dict[str, dict[str, Any]]:
    """Idempotency key -> input; every fifth order fails its first ``finish``."""
    return {f"{prefix}-{n}": {"n": n, "ms": ms, "fail": n % 5 == 0} for n in range(count)}


def completes(_value: Any) -> str:
    return "completed"


def order_attempts(value: Any, step_id: str, _step: Any) -> int | None:
    """What the retry policy gives when nothing times out."""
    return 2 if step_id == "finish" and value["fail"] else 1


def any_attempts(_value: Any, _step_id: str, _step: Any) -> int | None:
    return None

"""Helpers for the executor tests: a task factory and result collection."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

from magicflow.brokers.base import RESULTS_QUEUE
from magicflow.brokers.memory import MemoryBroker
from magicflow.messages import ResultMessage, TaskMessage, decode_result

_ids = itertools.count(1)


def make_task(function: str = "noop", input: Any = None, **overrides: Any) -> TaskMessage:
    fields: dict[str, Any] = {
        "id": f"task-{next(_ids)}",
        "workflow_id": "user-onboarding@1.2.0",
        "execution_id": "exec-1",
        "step_id": "validate-user",
        "function": function,
        "input": {} if input is None else input,
        "attempt": 1,
        "created_at": time.time(),
    }
    fields.update(overrides)
    return TaskMessage(**fields)


async def collect_results(
    broker: MemoryBroker, count: int, within: float = 5.0
) -> list[ResultMessage]:
    """Take ``count`` results from the results queue (fails after ``within`` seconds)."""
    results: list[ResultMessage] = []
    async with asyncio.timeout(within):
        while len(results) < count:
            deliveries = await broker.receive(RESULTS_QUEUE, count - len(results), 1.0)
            results.extend(decode_result(d.body) for d in deliveries)
            await broker.ack(deliveries)
    return results


async def no_results(broker: MemoryBroker, wait: float = 0.2) -> bool:
    return not await broker.receive(RESULTS_QUEUE, 10, wait)


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Poll state that has no event to wait on (counters, broker depth) until it holds."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)

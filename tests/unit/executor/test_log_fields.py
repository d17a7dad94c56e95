"""What is logged while a step runs carries the task's ids (SPEC: structured logs)."""

from __future__ import annotations

import logging

import pytest

from magicflow.brokers.memory import MemoryBroker
from magicflow.executor import Executor, Registry, StepContext
from magicflow.logs import fields_of
from magicflow.messages import encode

from .helpers import collect_results, make_task


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, dict[str, object]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.fields[record.getMessage()] = fields_of(record)


async def test_logs_of_a_step_and_of_its_failure_carry_the_task_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keep = Keep()
    logging.getLogger().addHandler(keep)
    registry = Registry()

    def fails(ctx: StepContext) -> None:  # sync: runs in a pool thread
        logging.getLogger("user.handlers").warning("about to fail")
        raise KeyError("missing")

    registry.register("fails", fails)
    broker = MemoryBroker()
    task = make_task("fails", attempt=2, item_index=4)
    try:
        with caplog.at_level(logging.INFO):
            async with Executor(broker, registry):
                await broker.publish("default", [encode(task)])
                await collect_results(broker, 1)
    finally:
        logging.getLogger().removeHandler(keep)
    expected = {
        "execution_id": "exec-1",
        "workflow": "user-onboarding@1.2.0",
        "step_id": "validate-user",
        "attempt": 2,
        "item_index": 4,
        "task_id": task.id,
    }
    assert keep.fields["about to fail"] == expected
    [failed] = [m for m in keep.fields if m.startswith(f"task {task.id}")]
    assert keep.fields[failed] == expected

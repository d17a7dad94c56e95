"""The driver's own failure paths: a commit or a read that fails, a decide that raises."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from magicflow.dsl import compile_workflow
from magicflow.engine.model import SignalReceived
from magicflow.errors import StoreError
from magicflow.service import Engine
from magicflow.stores import CommitResult, Transition
from magicflow.stores.memory import MemoryStore

from .conftest import registry_of
from .test_engine import APPROVAL, CHAIN, add, echo


class FlakyStore(MemoryStore):
    """Fails the next ``failures`` commits that carry transitions, and the next
    ``read_failures`` reads of states."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0
        self.read_failures = 0

    async def load_many(self, execution_ids: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        if self.read_failures:
            self.read_failures -= 1
            raise StoreError("connection refused")
        return await super().load_many(execution_ids)

    async def commit(
        self, transitions: Sequence[Transition], done_outbox: Sequence[int] = ()
    ) -> CommitResult:
        if transitions and self.failures:
            self.failures -= 1
            raise StoreError("disk on fire")
        return await super().commit(transitions, done_outbox)


async def test_a_failed_commit_is_decided_and_committed_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    async with Engine(store=store, registry=registry_of(add=add), shutdown_grace=0.5) as engine:
        await engine.register(compile_workflow(CHAIN, "chain.yaml"))
        store.failures = 2
        result = await engine.run("chain", {"x": 1}, timeout=10)
    assert result["status"] == "completed"
    assert result["steps"]["a"]["attempts"] == 1
    assert "committing a batch failed" in caplog.text


async def test_a_state_that_cannot_be_read_is_decided_again_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The store's server is down while the driver reads a state: the event waits, the
    driver lives on (it used to die, and the service with it)."""
    store = FlakyStore()
    async with Engine(store=store, registry=registry_of(echo=echo), shutdown_grace=0.5) as engine:
        await engine.register(compile_workflow(APPROVAL, "approval.yaml"))
        execution_id = await engine.start("approval")
        engine.driver._decider.forget([execution_id])  # the next event reads the store
        store.read_failures = 2
        await engine.signal(execution_id, "approve", "ok")
        result = await engine.wait(execution_id, timeout=10)
    assert result["status"] == "completed"
    assert store.read_failures == 0
    assert "deciding 1 event(s) failed; retrying" in caplog.text


async def test_an_event_that_makes_decide_raise_is_dropped_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    async with Engine(store=store, registry=registry_of(echo=echo), shutdown_grace=0.5) as engine:
        await engine.register(compile_workflow(APPROVAL, "approval.yaml"))
        execution_id = await engine.start("approval")
        real = engine.driver._decider._decide

        def exploding(state: Any, event: Any, *args: Any) -> Any:
            if isinstance(event, SignalReceived) and event.name == "bomb":
                raise RuntimeError("bug in decide")
            return real(state, event, *args)

        engine.driver._decider._decide = exploding
        with pytest.raises(RuntimeError, match="bug in decide"):
            await engine.driver.send(execution_id, SignalReceived("bomb"))
        await engine.signal(execution_id, "approve", "ok")
        result = await engine.wait(execution_id, timeout=10)
    assert result["status"] == "completed"
    assert "deciding SignalReceived" in caplog.text

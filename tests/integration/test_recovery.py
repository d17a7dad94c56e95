"""Restarts, sub-workflows and conflicts: what the driver guarantees around the state machine."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from magicflow.brokers.memory import MemoryBroker
from magicflow.engine.driver import Driver
from magicflow.engine.machine import decide
from magicflow.engine.model import ExecutionState
from magicflow.messages import TaskMessage, encode
from magicflow.service.catalog import Catalog
from magicflow.stores import Store, Transition
from magicflow.stores.memory import MemoryStore

from .conftest import EngineFactory, registry_of
from .test_engine import APPROVAL, add, echo

NAP = """
name: nap
version: "1"
steps:
  - id: nap
    sleep: 300ms
  - id: after
    function: add
    depends_on: [nap]
    input: {x: 1}
"""

SLOW = """
name: slow
version: "1"
steps:
  - id: only
    function: slow
"""

CHILD = """
name: child
version: "1"
steps:
  - id: work
    function: add
    input: {x: "${input.x}"}
"""

PARENT = """
name: parent
version: "1"
steps:
  - id: sub
    workflow: child
    input: {x: "${input.x}"}
  - id: after
    function: add
    depends_on: [sub]
    input: {x: "${steps.sub.output.work.x}"}
"""

ORPHAN = """
name: orphan
version: "1"
steps:
  - id: sub
    workflow: missing-child
"""


async def test_a_timer_survives_a_restart(make_engine: EngineFactory) -> None:
    async with make_engine(registry_of(add=add), NAP) as engine:
        execution_id = await engine.start("nap")
    async with make_engine(registry_of(add=add)) as engine:
        result = await engine.wait(execution_id, timeout=10)
    assert result["status"] == "completed"
    assert result["steps"]["after"]["output"] == {"x": 2}


async def test_a_task_lost_with_the_memory_broker_is_dispatched_again(
    make_engine: EngineFactory,
) -> None:
    release, running = asyncio.Event(), asyncio.Event()
    calls: list[tuple[str, int]] = []

    async def slow(ctx: Any) -> str:
        calls.append((ctx.step_id, ctx.attempt))
        running.set()
        await release.wait()
        return "done"

    async with make_engine(registry_of(slow=slow), SLOW, shutdown_grace=0.05) as engine:
        execution_id = await engine.start("slow")
        await asyncio.wait_for(running.wait(), 10)
    release.set()
    async with make_engine(registry_of(slow=slow)) as engine:
        result = await engine.wait(execution_id, timeout=10)
    assert result["status"] == "completed"
    assert result["steps"]["only"]["attempts"] == 1  # the same attempt, dispatched again
    assert calls == [("only", 1), ("only", 1)]


async def test_a_child_workflow_runs_and_its_output_flows_back(make_engine: EngineFactory) -> None:
    async with make_engine(registry_of(add=add), CHILD, PARENT) as engine:
        result = await engine.run("parent", {"x": 1}, timeout=10)
        assert result["status"] == "completed"
        assert result["steps"]["sub"]["output"] == {"work": {"x": 2}}
        assert result["output"] == {"after": {"x": 3}}
        children = await engine.store.list_executions(parent_id=result["execution_id"])
        assert [c.workflow for c in children.items] == ["child"]
        assert children.items[0].status == "completed"


async def test_a_child_workflow_that_is_not_registered_fails_the_step(
    make_engine: EngineFactory,
) -> None:
    async with make_engine(registry_of(add=add), ORPHAN) as engine:
        result = await engine.run("orphan", timeout=10)
    assert result["status"] == "failed"
    assert "missing-child" in result["steps"]["sub"]["error"]["message"]


async def test_cancelling_a_parent_cancels_its_child(make_engine: EngineFactory) -> None:
    waiting_parent = PARENT.replace("workflow: child", "workflow: approval")
    async with make_engine(registry_of(add=add, echo=echo), APPROVAL, waiting_parent) as engine:
        parent_id = await engine.start("parent", {"x": 1})
        children = await engine.store.list_executions(parent_id=parent_id)
        assert len(children.items) == 1
        await engine.cancel(parent_id)
        assert (await engine.wait(parent_id, timeout=10))["status"] == "cancelled"
        child = await engine.wait(children.items[0].id, timeout=10)
        assert child["status"] == "cancelled"


async def test_a_conflicting_writer_makes_the_driver_reload_and_decide_again(
    make_engine: EngineFactory,
) -> None:
    async with make_engine(registry_of(echo=echo), APPROVAL) as engine:
        execution_id = await engine.start("approval")
        # another writer moves the execution on behind the driver's back
        found = await engine.store.load(execution_id)
        assert found is not None
        version, blob = found
        state = msgspec.json.decode(blob, type=ExecutionState)
        state.input = {"changed": True}
        await _rewrite(engine.store, state, version)
        await engine.signal(execution_id, "approve", {"ok": 1})
        result = await engine.wait(execution_id, timeout=10)
    assert result["status"] == "completed"
    assert result["input"] == {"changed": True}  # decided on the reloaded state


async def _rewrite(store: Store, state: ExecutionState, version: int) -> None:
    result = await store.commit(
        [
            Transition(
                state.id,
                version,
                msgspec.json.encode(state),
                state.workflow,
                state.version,
                str(state.status),
                None,
                state.created_at,
                state.created_at,
            )
        ]
    )
    assert not result.conflicts


async def test_the_outbox_is_published_again_on_start_with_a_durable_broker() -> None:
    store, broker = MemoryStore(), MemoryBroker()
    task = TaskMessage("t1", "wf@1", "e1", "s", "f", {}, 1, 0.0)
    await store.commit(
        [
            Transition(
                "e1", 0, b"{}", "wf", "1", "running", None, 0.0, 0.0, outbox=[("q", encode(task))]
            )
        ]
    )
    driver = Driver(store, broker, decide, Catalog(store).resolve, recover=False)
    async with driver:
        deliveries = await broker.receive("q", 10, 1.0)
        assert [d.body for d in deliveries] == [encode(task)]
    assert await store.pending_outbox(10) == []

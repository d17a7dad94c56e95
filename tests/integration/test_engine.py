"""The in-process Engine API, end to end: SQLite (or memory) store, memory broker, executor."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from typing import Any

import pytest

from magicflow.dsl import compile_workflow
from magicflow.errors import ConflictError, NotFoundError, WorkflowValidationError

from .conftest import EngineFactory, registry_of

CHAIN = """
name: chain
version: "1"
steps:
  - id: a
    function: add
    input: {x: "${input.x}"}
  - id: b
    function: add
    depends_on: [a]
    input: {x: "${steps.a.output.x}"}
"""

FLAKY = """
name: flaky
version: "1"
steps:
  - id: only
    function: flaky
    retry_config: {strategy: fixed, max_attempts: 3, initial_interval: 10ms, jitter: false}
"""

BROKEN = """
name: broken
version: "1"
steps:
  - id: only
    function: boom
    retry_config: {strategy: fixed, max_attempts: 2, initial_interval: 10ms, jitter: false}
"""

SLEEPY = """
name: sleepy
version: "1"
steps:
  - id: nap
    sleep: 200ms
  - id: after
    function: add
    depends_on: [nap]
    input: {x: 1}
"""

APPROVAL = """
name: approval
version: "1"
steps:
  - id: wait
    wait_for: approve
  - id: done
    function: echo
    depends_on: [wait]
    input: "${steps.wait.output}"
"""

SCHEMA = """
name: typed
version: "1"
input_schema:
  type: object
  required: [email]
  properties: {email: {type: string}}
steps:
  - id: only
    function: echo
"""


async def add(ctx: Any) -> dict[str, int]:
    return {"x": ctx.input["x"] + 1}


async def echo(ctx: Any) -> Any:
    return ctx.input


async def boom(ctx: Any) -> None:
    raise RuntimeError("boom")


async def test_a_chain_runs_to_completion(make_engine: EngineFactory) -> None:
    async with make_engine(registry_of(add=add), CHAIN) as engine:
        result = await engine.run("chain", {"x": 1}, timeout=10)
    assert result["status"] == "completed"
    assert result["output"] == {"b": {"x": 3}}
    assert result["input"] == {"x": 1}
    assert result["workflow"] == {"name": "chain", "version": "1"}
    assert [s["status"] for s in result["steps"].values()] == ["completed", "completed"]
    assert result["execution_id"].startswith("01")
    assert len(result["execution_id"]) == 26


async def test_retries_until_success_and_counts_attempts(make_engine: EngineFactory) -> None:
    calls: list[int] = []

    async def flaky(ctx: Any) -> str:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError("not yet")
        return "ok"

    async with make_engine(registry_of(flaky=flaky), FLAKY) as engine:
        result = await engine.run("flaky", timeout=10)
    assert result["status"] == "completed"
    assert result["steps"]["only"]["attempts"] == 3
    assert calls == [1, 2, 3]


async def test_a_failing_step_fails_the_execution(make_engine: EngineFactory) -> None:
    async with make_engine(registry_of(boom=boom), BROKEN) as engine:
        result = await engine.run("broken", timeout=10)
        assert result["status"] == "failed"
        assert result["error"]["type"] == "RuntimeError"
        assert result["steps"]["only"]["attempts"] == 2
        with pytest.raises(ConflictError):
            await engine.cancel(result["execution_id"])


async def test_a_durable_sleep_wakes_the_driver(make_engine: EngineFactory) -> None:
    async with make_engine(registry_of(add=add), SLEEPY) as engine:
        loop = asyncio.get_running_loop()
        began = loop.time()
        result = await engine.run("sleepy", timeout=10)
        took = loop.time() - began
    assert result["status"] == "completed"
    assert 0.19 <= took < 2.0


async def test_a_signal_completes_a_waiting_step(make_engine: EngineFactory) -> None:
    async with make_engine(registry_of(echo=echo), APPROVAL) as engine:
        execution_id = await engine.start("approval")
        document = await engine.get(execution_id)
        assert document["status"] == "running"
        assert document["steps"]["wait"]["status"] == "waiting"
        await engine.signal(execution_id, "approve", {"by": "ada"})
        result = await engine.wait(execution_id, timeout=10)
    assert result["status"] == "completed"
    assert result["steps"]["done"]["output"] == {"by": "ada"}


async def test_cancel_pause_resume(make_engine: EngineFactory) -> None:
    async with make_engine(registry_of(echo=echo), APPROVAL) as engine:
        first = await engine.start("approval")
        await engine.pause(first)
        assert (await engine.get(first))["status"] == "paused"
        with pytest.raises(ConflictError):
            await engine.pause(first)
        await engine.resume(first)
        assert (await engine.get(first))["status"] == "running"
        await engine.cancel(first)
        result = await engine.wait(first, timeout=10)
        assert result["status"] == "cancelled"
        assert result["steps"]["done"]["status"] == "cancelled"


async def test_retry_runs_a_failed_execution_again(make_engine: EngineFactory) -> None:
    healthy = False

    async def sometimes(ctx: Any) -> str:
        if not healthy:
            raise RuntimeError("down")
        return "up"

    async with make_engine(registry_of(boom=sometimes), BROKEN) as engine:
        result = await engine.run("broken", timeout=10)
        assert result["status"] == "failed"
        healthy = True
        await engine.retry(result["execution_id"])
        again = await engine.wait(result["execution_id"], timeout=10)
    assert again["status"] == "completed"
    assert again["steps"]["only"]["output"] == "up"


async def test_waiting_on_a_finished_execution_returns_at_once(make_engine: EngineFactory) -> None:
    async with make_engine(registry_of(add=add, echo=echo), CHAIN, APPROVAL) as engine:
        execution_id = await engine.start("chain", {"x": 0})
        first = await engine.wait(execution_id, timeout=10)
        again = await engine.wait(execution_id, timeout=1)
        assert first == again
        waiting = await engine.start("approval")
        with pytest.raises(TimeoutError):
            await engine.wait(waiting, timeout=0.01)
        await engine.cancel(waiting)
        assert (await engine.wait(waiting, timeout=10))["status"] == "cancelled"


async def test_unknown_things_are_not_found(make_engine: EngineFactory) -> None:
    async with make_engine(registry_of(add=add), CHAIN) as engine:
        with pytest.raises(NotFoundError):
            await engine.get("nope")
        with pytest.raises(NotFoundError):
            await engine.wait("nope")
        with pytest.raises(NotFoundError):
            await engine.cancel("nope")
        with pytest.raises(NotFoundError):
            await engine.start("no-such-workflow")
        with pytest.raises(NotFoundError):
            await engine.start("chain", version="9")


async def test_an_idempotency_key_starts_one_execution(make_engine: EngineFactory) -> None:
    async with make_engine(registry_of(add=add), CHAIN) as engine:
        ids = await asyncio.gather(
            *(engine.start("chain", {"x": 1}, idempotency_key="k") for _ in range(5))
        )
        assert len(set(ids)) == 1
        assert await engine.start("chain", {"x": 1}, idempotency_key="k") == ids[0]
        assert await engine.start("chain", {"x": 1}, idempotency_key="other") != ids[0]
        page = await engine.list_executions(workflow="chain")
        assert len(page["items"]) == 2
        for document in page["items"]:
            await engine.wait(document["execution_id"], timeout=10)


async def test_input_is_checked_before_anything_starts(make_engine: EngineFactory) -> None:
    async with make_engine(registry_of(echo=echo), SCHEMA) as engine:
        with pytest.raises(WorkflowValidationError) as caught:
            await engine.start("typed", {"mail": "x"})
        assert "email" in str(caught.value)
        assert (await engine.list_executions())["items"] == []
        result = await engine.run("typed", {"email": "a@b.c"}, timeout=10)
        assert result["output"] == {"only": {"email": "a@b.c"}}


async def test_registering_is_idempotent_per_content(make_engine: EngineFactory) -> None:
    async with make_engine() as engine:
        plan = compile_workflow(CHAIN, "chain.yaml")
        assert await engine.register(plan) is True
        assert await engine.register(plan) is False
        changed = compile_workflow(CHAIN.replace("${input.x}", "${input.y}"), "chain.yaml")
        with pytest.raises(ConflictError):
            await engine.register(changed)


async def test_latest_version_is_used_when_none_is_given(make_engine: EngineFactory) -> None:
    v2 = CHAIN.replace('version: "1"', 'version: "1.10"').replace("x + 1", "x")
    async with make_engine(registry_of(add=add), CHAIN, v2) as engine:
        result = await engine.run("chain", {"x": 1}, timeout=10)
        assert result["workflow"]["version"] == "1.10"
        pinned = await engine.run("chain", {"x": 1}, version="1", timeout=10)
        assert pinned["workflow"]["version"] == "1"


async def test_register_file_keeps_the_source(make_engine: EngineFactory, tmp_path: Any) -> None:
    path = tmp_path / "chain.yaml"
    path.write_text(CHAIN)
    async with make_engine(registry_of(add=add)) as engine:
        plan = await engine.register_file(path)
        assert plan.name == "chain"
        stored = await engine.store.get_definition("chain", "1")
        assert stored is not None
        assert stored.source == CHAIN
        assert (await engine.run("chain", {"x": 5}, timeout=10))["status"] == "completed"
        (tmp_path / "bad.yaml").write_text("name: Bad\n")
        with pytest.raises(WorkflowValidationError):
            await engine.register_file(tmp_path / "bad.yaml")


async def test_many_concurrent_executions_all_complete(make_engine: EngineFactory) -> None:
    async with make_engine(registry_of(add=add), CHAIN) as engine:
        ids = await asyncio.gather(*(engine.start("chain", {"x": n}) for n in range(300)))
        results = await asyncio.gather(*(engine.wait(i, timeout=30) for i in ids))
    assert [r["output"]["b"]["x"] for r in results] == [n + 2 for n in range(300)]
    assert engine.driver.transitions >= 900
    assert engine.driver.batches < 900  # grouped


async def test_listing_pages_newest_first(make_engine: EngineFactory) -> None:
    async with make_engine(registry_of(add=add), CHAIN) as engine:
        ids = [await engine.start("chain", {"x": n}) for n in range(5)]
        for execution_id in ids:
            await engine.wait(execution_id, timeout=10)
        page = await engine.list_executions(limit=3)
        assert [d["execution_id"] for d in page["items"]] == ids[::-1][:3]
        rest = await engine.list_executions(limit=3, cursor=page["next_cursor"])
        assert [d["execution_id"] for d in rest["items"]] == ids[::-1][3:]
        assert rest["next_cursor"] is None


async def test_interpreter_settings_are_restored_after_the_last_engine(
    make_engine: EngineFactory,
) -> None:
    before = (gc.get_threshold(), sys.getswitchinterval())
    first = make_engine()
    second = make_engine()
    await first.__aenter__()
    await second.__aenter__()
    assert gc.get_threshold()[0] >= 50_000
    await first.__aexit__(None, None, None)
    assert gc.get_threshold()[0] >= 50_000  # the second engine still runs
    await second.__aexit__(None, None, None)
    assert (gc.get_threshold(), sys.getswitchinterval()) == before


async def test_lifecycle_events_are_recorded_and_streamed(make_engine: EngineFactory) -> None:
    seen: list[tuple[str, str]] = []
    async with make_engine(registry_of(add=add), CHAIN) as engine:
        engine.driver.add_listener(lambda eid, emits: seen.extend((eid, e.kind) for e in emits))
        result = await engine.run("chain", {"x": 1}, timeout=10)
        records = await engine.store.read_events(result["execution_id"])
    kinds = [e["kind"] for r in records for e in json.loads(r.body)]
    assert kinds[0] == "execution.started"
    assert kinds[-1] == "execution.completed"
    assert [r.version for r in records] == sorted(r.version for r in records)
    assert [k for eid, k in seen if eid == result["execution_id"]] == kinds


async def test_an_error_in_the_body_leaves_the_engine_as_itself(
    make_engine: EngineFactory,
) -> None:
    async def body() -> None:
        async with make_engine(registry_of(add=add), CHAIN) as engine:
            assert (await engine.run("chain", {"x": 1}, timeout=10))["status"] == "completed"
            raise KeyError("mine")

    with pytest.raises(KeyError):
        await body()

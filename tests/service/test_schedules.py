"""Cron schedules: the API, and the scheduler driven by a clock moved by hand (no sleeping):
one execution per tick even with two instances, the missed-ticks policies."""

from __future__ import annotations

import asyncio
import tempfile
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from magicflow.service import Engine
from magicflow.service.scheduler import Scheduler, tick_key
from magicflow.stores.base import ScheduleRecord

from ..service_stores import postgresql_url, redis_url
from .conftest import GREET, register

T0 = datetime(2030, 1, 1, 0, 5, tzinfo=UTC).timestamp()  # a tick of */5
FIVE_MINUTES = 300.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def schedule(missed: str = "skip", **kwargs: object) -> ScheduleRecord:
    values: dict[str, object] = {
        "id": "sch_1",
        "workflow": "greet",
        "cron": "*/5 * * * *",
        "next_run": T0,
        "created_at": T0 - 60,
        "input": b'{"name": "cron"}',
        "missed": missed,
    } | kwargs
    return ScheduleRecord(**values)  # type: ignore[arg-type]


@pytest.fixture
async def greet(admin: httpx.AsyncClient) -> None:
    assert (await register(admin, GREET)).status_code == 201


async def executions(engine: Engine) -> list[str]:
    page = await engine.store.list_executions(workflow="greet")
    return [record.id for record in page.items]


async def test_a_tick_starts_one_execution_with_the_schedules_input(
    engine: Engine, greet: None
) -> None:
    await engine.store.save_schedule(schedule())
    clock = Clock(T0 - 1)
    scheduler = Scheduler(engine, clock=clock)
    assert await scheduler.run_due() == []
    clock.now = T0 + 0.5
    (execution_id,) = await scheduler.run_due()
    assert (await engine.get(execution_id))["input"] == {"name": "cron"}
    assert await engine.store.find_idempotent("greet", tick_key("sch_1", T0)) == execution_id
    assert tick_key("sch_1", T0) == "schedule:sch_1:2030-01-01T00:05:00Z"
    assert await scheduler.run_due() == []  # the next run moved on
    (record,) = await engine.store.list_schedules()
    assert record.next_run == T0 + FIVE_MINUTES
    clock.now = T0 + FIVE_MINUTES
    assert len(await scheduler.run_due()) == 1
    assert len(await executions(engine)) == 2


async def test_two_instances_firing_the_same_tick_start_one_execution(
    engine: Engine, greet: None
) -> None:
    await engine.store.save_schedule(schedule())
    clock = Clock(T0 + 1)
    first, second = Scheduler(engine, clock=clock), Scheduler(engine, clock=clock)
    fired = await asyncio.gather(first.run_due(), second.run_due(), first.run_due())
    assert len({execution_id for ids in fired for execution_id in ids}) == 1
    assert len(await executions(engine)) == 1
    (record,) = await engine.store.list_schedules()
    assert record.next_run == T0 + FIVE_MINUTES


async def test_a_tick_fired_again_after_a_crash_finds_its_execution(
    engine: Engine, greet: None
) -> None:
    """A crash between the start and the move of the next run fires the tick again."""
    await engine.store.save_schedule(schedule())
    scheduler = Scheduler(engine, clock=Clock(T0))
    (first,) = await scheduler.run_due()
    await engine.store.advance_schedule("sch_1", T0 + FIVE_MINUTES, T0)  # as if never moved
    assert await scheduler.run_due() == [first]
    assert len(await executions(engine)) == 1


async def test_skip_runs_none_of_the_missed_ticks(engine: Engine, greet: None) -> None:
    await engine.store.save_schedule(schedule("skip"))
    scheduler = Scheduler(engine, clock=Clock(T0 + 3 * FIVE_MINUTES + 10))
    assert await scheduler.run_due() == []
    assert await executions(engine) == []
    (record,) = await engine.store.list_schedules()
    assert record.next_run == T0 + 4 * FIVE_MINUTES


async def test_skip_runs_a_tick_a_little_late_but_not_past_the_grace(
    engine: Engine, greet: None
) -> None:
    await engine.store.save_schedule(schedule("skip"))
    clock = Clock(T0 + 30)
    scheduler = Scheduler(engine, clock=clock, grace=60)
    assert len(await scheduler.run_due()) == 1
    clock.now = T0 + FIVE_MINUTES + 61
    assert await scheduler.run_due() == []
    (record,) = await engine.store.list_schedules()
    assert record.next_run == T0 + 2 * FIVE_MINUTES


async def test_run_once_runs_one_catch_up_execution_for_the_latest_tick(
    engine: Engine, greet: None
) -> None:
    await engine.store.save_schedule(schedule("run_once"))
    scheduler = Scheduler(engine, clock=Clock(T0 + 3 * FIVE_MINUTES + 10))
    (execution_id,) = await scheduler.run_due()
    latest = tick_key("sch_1", T0 + 3 * FIVE_MINUTES)
    assert await engine.store.find_idempotent("greet", latest) == execution_id
    assert await executions(engine) == [execution_id]
    (record,) = await engine.store.list_schedules()
    assert record.next_run == T0 + 4 * FIVE_MINUTES


async def test_a_disabled_schedule_does_not_fire(engine: Engine, greet: None) -> None:
    await engine.store.save_schedule(replace(schedule(), enabled=False))
    assert await Scheduler(engine, clock=Clock(T0 + 1)).run_due() == []


async def test_a_tick_that_cannot_start_moves_on(engine: Engine, greet: None) -> None:
    await engine.store.save_schedule(schedule(input=b'{"wrong": 1}'))
    assert await Scheduler(engine, clock=Clock(T0)).run_due() == []
    (record,) = await engine.store.list_schedules()
    assert record.next_run == T0 + FIVE_MINUTES


async def test_schedules_through_the_api(
    app: FastAPI,
    admin: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    keys: dict[str, str],
    greet: None,
) -> None:
    app.state.scheduler.clock = Clock(T0 - 10)
    url = "/api/v1/workflows/greet/schedules"
    body = {"cron": "*/5 * * * *", "input": {"name": "x"}, "missed": "run_once"}
    operator = {"Authorization": f"Bearer {keys['operator']}"}
    viewer = {"Authorization": f"Bearer {keys['viewer']}"}
    created = await anonymous.post(url, json=body, headers=operator)
    assert created.status_code == 201, created.text
    made = created.json()
    assert made["next_run"] == "2030-01-01T00:05:00.000Z"
    assert (made["input"], made["missed"], made["enabled"]) == ({"name": "x"}, "run_once", True)
    listed = await anonymous.get(url, headers=viewer)
    assert listed.json()["items"] == [made]
    assert (await anonymous.post(url, json=body, headers=viewer)).status_code == 403
    assert (await admin.get("/api/v1/workflows/other/schedules")).json()["items"] == []
    missing = await admin.post("/api/v1/workflows/other/schedules", json=body)
    assert missing.status_code == 404
    for cron in ("* * *", "61 * * * *", "not cron at all"):
        bad = await admin.post(url, json={"cron": cron})
        assert bad.status_code == 422, cron
    assert (await admin.delete(f"/api/v1/workflows/other/schedules/{made['id']}")).status_code == (
        404
    )
    assert (await admin.delete(f"{url}/{made['id']}")).status_code == 204
    assert (await admin.delete(f"{url}/{made['id']}")).status_code == 404
    assert (await admin.get(url)).json()["items"] == []


@pytest.mark.services
@pytest.mark.parametrize("backend", ["postgresql", "redis"])
async def test_two_service_instances_on_one_store_start_one_execution_per_tick(
    backend: str,
) -> None:
    opener = postgresql_url if backend == "postgresql" else redis_url
    async with opener() as url, AsyncExitStack() as stack:
        engines = [
            await stack.enter_async_context(Engine(store=url, shutdown_grace=0.5)) for _ in range(2)
        ]
        plan = await engines[0].register_file(await _greet_file(stack))
        await engines[0].store.save_schedule(schedule(workflow=plan.name))
        clock = Clock(T0 + 1)
        schedulers = [Scheduler(engine, clock=clock) for engine in engines for _ in range(2)]
        fired = await asyncio.gather(*(s.run_due() for s in schedulers))
        assert len({execution_id for ids in fired for execution_id in ids}) == 1
        page = await engines[1].store.list_executions(workflow="greet")
        assert len(page.items) == 1
        clock.now = T0 + FIVE_MINUTES
        fired = await asyncio.gather(*(s.run_due() for s in schedulers))
        assert len({execution_id for ids in fired for execution_id in ids}) == 1
        assert len((await engines[0].store.list_executions(workflow="greet")).items) == 2


async def _greet_file(stack: AsyncExitStack) -> Path:
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    path = folder / "greet.yaml"
    path.write_text(GREET)
    return path

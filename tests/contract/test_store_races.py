"""Two store objects (two pools, as two service instances would have) on one database,
committing the same creates at once: each execution is created once, the loser is told; and
claiming the same due deliveries at once: each delivery is taken by one of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path

import pytest

from magicflow.stores import DeliveryRecord, Store, Transition, store_from_url

from ..service_stores import postgresql_url, redis_url


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.services),
        pytest.param("redis", marks=pytest.mark.services),
    ]
)
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Store]]:
    async with AsyncExitStack() as stack:
        if request.param == "postgresql":
            url = await stack.enter_async_context(postgresql_url())
        elif request.param == "redis":
            url = await stack.enter_async_context(redis_url())
        else:
            url = f"sqlite:///{tmp_path / 'store.db'}"
        stores = [store_from_url(url), store_from_url(url)]
        for store in stores:
            await store.open()
            stack.push_async_callback(store.close)
        yield stores


def create(execution_id: str, key: str | None = None) -> Transition:
    return Transition(
        execution_id=execution_id,
        expected_version=0,
        state=execution_id.encode(),
        workflow="wf",
        workflow_version="1",
        status="running",
        parent_id=None,
        created_at=1.0,
        updated_at=1.0,
        timers_set=[("t", 5.0)],
        outbox=[("q", execution_id.encode())],
        breakers=[("f", b"x"), ("g", b"y")],
        idempotency_key=key,
        events=b"[]",
    )


async def test_racing_batches_create_each_execution_once(pair: list[Store]) -> None:
    ids = [f"e{n:03d}" for n in range(60)]
    batches = [
        [create(i) for i in ids[:40]],
        [create(i) for i in reversed(ids[20:])],
        [create(i) for i in ids[10:50]],
        [create(i) for i in reversed(ids)],
    ]
    results = await asyncio.gather(*(pair[n % 2].commit(batch) for n, batch in enumerate(batches)))
    for execution_id in ids:
        applied = [
            r
            for r, batch in zip(results, batches, strict=True)
            if any(t.execution_id == execution_id for t in batch)
            and execution_id not in r.conflicts
        ]
        assert len(applied) == 1, execution_id
    assert sum(len(r.outbox) for r in results) == len(ids)
    assert len(await pair[0].pending_outbox(1000)) == len(ids)
    loaded = await pair[1].load_many(ids)
    assert loaded == {i: (1, i.encode()) for i in ids}
    assert len(await pair[0].all_timers()) == len(ids)
    assert len(await pair[1].non_terminal_executions()) == len(ids)


async def test_racing_idempotency_keys_start_one_execution(pair: list[Store]) -> None:
    results = await asyncio.gather(
        *(pair[n % 2].commit([create(f"x{n}", key="same")]) for n in range(8))
    )
    winners = [n for n, r in enumerate(results) if not r.conflicts]
    assert len(winners) == 1
    assert await pair[0].find_idempotent("wf", "same") == f"x{winners[0]}"
    assert len(await pair[1].load_many([f"x{n}" for n in range(8)])) == 1


async def test_racing_claims_never_take_a_delivery_twice(pair: list[Store]) -> None:
    ids = [f"d{n:03d}" for n in range(200)]
    deliveries = [
        DeliveryRecord(i, "wh", "execution.completed", b"{}", 1.0, next_attempt=1.0) for i in ids
    ]
    await pair[0].commit([replace(create("x"), deliveries=deliveries)])

    async def claimer(store: Store) -> list[str]:
        taken: list[str] = []
        while batch := await store.claim_due_deliveries(10.0, 7, 60.0):
            taken += [d.id for d in batch]
            await asyncio.sleep(0)
        return taken

    results = await asyncio.gather(*(claimer(store) for store in pair * 2))
    claimed = [i for taken in results for i in taken]
    assert sorted(claimed) == ids  # every delivery once, none twice
    assert sum(1 for taken in results if taken) >= 2  # they really raced

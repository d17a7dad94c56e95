"""The ``Leases`` contract (partition leases of service instances), on every store that has
it: the in-memory store and PostgreSQL (real server; a schema of its own per test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from magicflow.stores import store_from_url
from magicflow.stores.base import Leases, Store
from magicflow.stores.memory import MemoryStore

from ..service_stores import postgresql_url

PARTITIONS = 16
TTL = 30.0


@pytest.fixture(params=["memory", pytest.param("postgresql", marks=pytest.mark.services)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Leases]:
    async with AsyncExitStack() as stack:
        backend: Store
        if request.param == "postgresql":
            backend = store_from_url(await stack.enter_async_context(postgresql_url()))
        else:
            backend = MemoryStore()
        await backend.open()
        stack.push_async_callback(backend.close)
        assert isinstance(backend, Leases)
        yield backend


async def test_a_lone_instance_holds_every_partition(store: Leases) -> None:
    held = await store.renew_leases("a", PARTITIONS, TTL)
    assert sorted(held) == list(range(PARTITIONS))
    assert await store.renew_leases("a", PARTITIONS, TTL) == held  # renewing keeps the epochs


async def test_a_new_instance_gets_its_share_once_the_holder_renews(store: Leases) -> None:
    await store.renew_leases("a", PARTITIONS, TTL)
    assert await store.renew_leases("b", PARTITIONS, TTL) == {}  # nothing is free yet
    a = await store.renew_leases("a", PARTITIONS, TTL)  # two live instances: a gives half back
    b = await store.renew_leases("b", PARTITIONS, TTL)
    assert len(a) == len(b) == PARTITIONS // 2
    assert set(a) | set(b) == set(range(PARTITIONS))
    first = await store.renew_leases("a", PARTITIONS, TTL)
    assert set(first) == set(a)
    assert all(epoch >= 2 for epoch in b.values())  # taken over: a new epoch


async def test_partitions_of_an_instance_that_stopped_renewing_are_taken(store: Leases) -> None:
    await store.renew_leases("a", PARTITIONS, 0.5)
    await asyncio.sleep(0.6)  # the lease under test runs out
    held = await store.renew_leases("b", PARTITIONS, 0.5)
    assert sorted(held) == list(range(PARTITIONS))
    assert await store.renew_leases("a", PARTITIONS, 0.5) == {}  # a lost them all


async def test_a_released_instance_hands_everything_over_at_once(store: Leases) -> None:
    await store.renew_leases("a", PARTITIONS, TTL)
    await store.renew_leases("b", PARTITIONS, TTL)
    await store.release_leases("a")
    assert sorted(await store.renew_leases("b", PARTITIONS, TTL)) == list(range(PARTITIONS))


async def test_instances_renewing_at_once_never_hold_the_same_partition(store: Leases) -> None:
    owners = [f"i{n}" for n in range(4)]
    for _ in range(5):
        rounds = await asyncio.gather(*(store.renew_leases(o, PARTITIONS, TTL) for o in owners))
        seen = [p for held in rounds for p in held]
        assert len(seen) == len(set(seen)), rounds
    # settled: each holds its fair share (16 / 4)
    assert [len(held) for held in rounds] == [PARTITIONS // len(owners)] * len(owners)

"""The distributed benchmark still runs: every pair, tiny counts, on the real servers, and it
leaves nothing of its own behind on them (its schema, key prefix and broker namespace)."""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]
import pytest
import redis.asyncio as aioredis
from bench.distributed import PAIRS, SERVERS, TARGETS, isolated, measure, servers_for, table
from bench.workloads import Results

pytestmark = pytest.mark.services


async def _leftovers(tag: str) -> list[str]:
    """What the servers still hold under ``tag`` (PostgreSQL schema, Redis keys)."""
    conn = await asyncpg.connect(SERVERS["postgresql"])
    try:
        found = await conn.fetch(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name = $1", tag
        )
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(SERVERS["redis"])
    try:
        keys = [key.decode() async for key in client.scan_iter(match=f"*{tag}*", count=1000)]
    finally:
        await client.aclose()
    return [row["schema_name"] for row in found] + keys


async def test_every_pair_runs_and_cleans_up() -> None:
    measured: dict[str, Results] = {}
    async with servers_for(PAIRS):
        for title, (store, broker) in PAIRS.items():
            async with isolated(title, store, broker) as pair:
                measured[title] = await measure(pair, w1=20, w2=3, w4=3, samples=10)
            assert await _leftovers(pair.tag) == [], title
    for title in PAIRS:
        values = {(row.workload, row.measure): row.value for row in measured[title].rows}
        assert values[("W1", "20 one-step workflows")] > 0, title
        assert values[("W2", "steps per executor")] > 0, title
        assert 0 < values[("broker", "deliver 1 message, median")] < 5000, title
    printed = table(measured)
    assert printed.splitlines()[0].endswith(" | ".join(PAIRS) + " | target |")
    assert all(target in printed for target in TARGETS.values())

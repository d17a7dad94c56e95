"""The distributed benchmark still runs: every pair, tiny counts, on the real servers, and it
leaves nothing behind on them (its schemas and key prefixes start with ``bench_``)."""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]
import pytest
import redis.asyncio as aioredis
from bench.distributed import PAIRS, SERVERS, TARGETS, run_pairs, table

pytestmark = pytest.mark.services


async def _leftovers() -> set[str]:
    conn = await asyncpg.connect(SERVERS["postgresql"])
    try:
        rows = await conn.fetch(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'bench_%'"
        )
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(SERVERS["redis"])
    try:
        keys = {key.decode() async for key in client.scan_iter(match="*bench_*", count=1000)}
    finally:
        await client.aclose()
    return {row["schema_name"] for row in rows} | keys


async def test_every_pair_runs_and_cleans_up() -> None:
    before = await _leftovers()
    measured = await run_pairs(PAIRS, w1=20, w2=3, w4=3, samples=10)
    assert list(measured) == list(PAIRS)
    for title, results in measured.items():
        values = {(row.workload, row.measure): row.value for row in results.rows}
        assert values[("W1", "20 one-step workflows")] > 0, title
        assert values[("W2", "steps per executor")] > 0, title
        assert 0 < values[("broker", "deliver 1 message, median")] < 5000, title
    printed = table(measured)
    assert printed.splitlines()[0].endswith(" | ".join(PAIRS) + " | seed target |")
    assert all(target in printed for target in TARGETS.values())
    assert await _leftovers() <= before

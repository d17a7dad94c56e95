"""Partition leases on PostgreSQL (the ``Leases`` Protocol of ``stores.base``).

One transaction per renewal, on the database's clock. Taking partitions uses
``FOR UPDATE SKIP LOCKED``: two instances renewing at once never take the same partition, and
neither waits for the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicflow.stores.base import fair_share

if TYPE_CHECKING:
    import asyncpg  # type: ignore[import-untyped]

_NOW = "SELECT extract(epoch FROM clock_timestamp())::float8"
_HEARTBEAT = """
    INSERT INTO service_instances (owner, seen) VALUES ($1, $2)
    ON CONFLICT (owner) DO UPDATE SET seen = excluded.seen
"""
_FORGET_GONE = "DELETE FROM service_instances WHERE seen < $1"
_LIVE = "SELECT count(*) FROM service_instances WHERE seen >= $1"
_ENSURE = """
    INSERT INTO partition_leases (partition) SELECT generate_series(0, $1 - 1)
    ON CONFLICT DO NOTHING
"""
_MINE = """
    SELECT partition, epoch FROM partition_leases
    WHERE owner = $1 AND partition < $2 ORDER BY partition FOR UPDATE
"""
_GIVE_BACK = "UPDATE partition_leases SET owner = NULL, lease_until = 0 WHERE partition = ANY($1)"
_FREE = """
    SELECT partition FROM partition_leases
    WHERE partition < $1 AND owner IS DISTINCT FROM $2 AND (owner IS NULL OR lease_until < $3)
    ORDER BY partition LIMIT $4 FOR UPDATE SKIP LOCKED
"""
_TAKE = """
    UPDATE partition_leases SET owner = $1, epoch = epoch + 1
    WHERE partition = ANY($2) RETURNING partition, epoch
"""
_EXTEND = "UPDATE partition_leases SET lease_until = $2 WHERE owner = $1"
_RELEASE_ALL = "UPDATE partition_leases SET owner = NULL, lease_until = 0 WHERE owner = $1"
_UNREGISTER = "DELETE FROM service_instances WHERE owner = $1"


async def renew(
    conn: asyncpg.Connection, owner: str, partitions: int, ttl: float
) -> dict[int, int]:
    async with conn.transaction():
        now = await conn.fetchval(_NOW)
        await conn.execute(_HEARTBEAT, owner, now)
        await conn.execute(_FORGET_GONE, now - 100 * ttl)
        fair = fair_share(partitions, await conn.fetchval(_LIVE, now - ttl))
        await conn.execute(_ENSURE, partitions)
        mine = {row[0]: row[1] for row in await conn.fetch(_MINE, owner, partitions)}
        extra = sorted(mine)[fair:]
        if extra:
            await conn.execute(_GIVE_BACK, extra)
            for partition in extra:
                del mine[partition]
        if len(mine) < fair:
            free = [
                row[0] for row in await conn.fetch(_FREE, partitions, owner, now, fair - len(mine))
            ]
            if free:
                mine.update((row[0], row[1]) for row in await conn.fetch(_TAKE, owner, free))
        await conn.execute(_EXTEND, owner, now + ttl)
        return dict(sorted(mine.items()))


async def release(conn: asyncpg.Connection, owner: str) -> None:
    async with conn.transaction():
        await conn.execute(_RELEASE_ALL, owner)
        await conn.execute(_UNREGISTER, owner)

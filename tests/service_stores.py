"""Fresh, isolated stores on the real servers: a new PostgreSQL schema or a new Redis key
prefix per use, dropped afterwards. Servers: ``MAGICFLOW_TEST_POSTGRESQL_URL`` and
``MAGICFLOW_TEST_REDIS_URL`` (default: the loopback servers)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg  # type: ignore[import-untyped]
import redis.asyncio as aioredis

POSTGRESQL = os.environ.get(
    "MAGICFLOW_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS = os.environ.get("MAGICFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@asynccontextmanager
async def postgresql_url() -> AsyncIterator[str]:
    """A store URL on a schema of its own."""
    schema = f"mf_test_{uuid.uuid4().hex[:16]}"
    try:
        yield f"{POSTGRESQL}?schema={schema}"
    finally:
        conn = await asyncpg.connect(POSTGRESQL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


@asynccontextmanager
async def redis_url() -> AsyncIterator[str]:
    """A store URL with a key prefix of its own."""
    prefix = f"magicflow-test:{uuid.uuid4().hex[:16]}:"
    try:
        yield f"{REDIS}?prefix={prefix}"
    finally:
        client = aioredis.Redis.from_url(REDIS)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
            for start in range(0, len(keys), 1000):
                await client.delete(*keys[start : start + 1000])
        finally:
            await client.aclose()

"""What the PostgreSQL and Redis stores take from their URLs, and how a server they cannot
reach is reported (no server needed: nothing listens on port 1)."""

from __future__ import annotations

import pytest

from magicflow.errors import ConfigurationError, StoreError
from magicflow.stores import store_from_url
from magicflow.stores.postgresql import PostgreSQLStore
from magicflow.stores.postgresql import parse_url as postgresql_url
from magicflow.stores.redis import RedisStore
from magicflow.stores.redis import parse_url as redis_url


def test_postgresql_options_are_ours_or_asyncpg_s() -> None:
    assert postgresql_url("postgresql://u@h:5432/db") == ("postgresql://u@h:5432/db", None, 10)
    assert postgresql_url("postgres://u@h/db?schema=s1&pool_size=3&sslmode=require") == (
        "postgres://u@h/db?sslmode=require",
        "s1",
        3,
    )
    with pytest.raises(ConfigurationError, match="pool_size"):
        postgresql_url("postgresql://h/db?pool_size=many")
    assert isinstance(store_from_url("postgres://h/db"), PostgreSQLStore)


def test_redis_options_are_the_prefix_and_the_pool() -> None:
    assert redis_url("redis://h:6379/0") == ("redis://h:6379/0", "magicflow:", 32)
    assert redis_url("rediss://h/2?prefix=p:&pool_size=4") == ("rediss://h/2", "p:", 4)
    with pytest.raises(ConfigurationError, match="pool_size"):
        redis_url("redis://h?pool_size=x")
    store = store_from_url("redis://h:6379/1?prefix=mine:")
    assert isinstance(store, RedisStore)
    assert store.prefix == "mine:"


@pytest.mark.parametrize(
    "url", ["postgresql://user:secret@127.0.0.1:1/db", "redis://:secret@127.0.0.1:1/0"]
)
async def test_an_unreachable_server_is_a_store_error_without_the_password(url: str) -> None:
    store = store_from_url(url)
    with pytest.raises(StoreError, match="cannot open") as raised:
        await store.open()
    assert "secret" not in str(raised.value)
    await store.close()  # closing a store that never opened is fine


async def test_a_store_that_is_not_open_says_so() -> None:
    for url in ("postgresql://127.0.0.1:1/db", "redis://127.0.0.1:1/0"):
        with pytest.raises(StoreError, match="not open"):
            await store_from_url(url).load("e1")

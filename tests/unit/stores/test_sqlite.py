"""What only the SQLite backend has: URLs, pragmas, migrations, persistence, its threads."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from magicflow.errors import ConfigurationError, StoreError
from magicflow.stores import Transition, store_from_url
from magicflow.stores._sqlite_schema import MIGRATIONS
from magicflow.stores.memory import MemoryStore
from magicflow.stores.sqlite import SQLiteStore, path_from_url


def _transition(execution_id: str, expected: int = 0) -> Transition:
    return Transition(execution_id, expected, b"s", "wf", "1", "running", None, 1.0, 1.0)


def test_urls_follow_the_sqlalchemy_convention() -> None:
    assert path_from_url("sqlite:///relative/x.db") == "relative/x.db"
    assert path_from_url("sqlite:////abs/x.db") == "/abs/x.db"
    assert path_from_url("sqlite:///:memory:") == ":memory:"
    for bad in ("sqlite://host/x.db", "sqlite:///", "postgresql://x"):
        with pytest.raises(ConfigurationError):
            path_from_url(bad)


def test_store_from_url_picks_the_backend_by_scheme(tmp_path: Path) -> None:
    assert isinstance(store_from_url(f"sqlite:///{tmp_path}/x.db"), SQLiteStore)
    assert isinstance(store_from_url("memory://"), MemoryStore)
    assert type(store_from_url("postgresql://localhost/db")).__name__ == "PostgreSQLStore"
    assert type(store_from_url("redis://localhost:6379/0")).__name__ == "RedisStore"
    with pytest.raises(ConfigurationError, match="unsupported"):
        store_from_url("mongodb://x")


async def test_the_database_is_created_in_wal_mode_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.db"
    store = SQLiteStore(path)
    await store.open()
    await store.open()  # opening twice is harmless
    await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version")]
        assert versions == list(range(1, len(MIGRATIONS) + 1))
    finally:
        conn.close()


async def test_state_survives_closing_and_reopening(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "x.db")
    await store.open()
    result = await store.commit([_transition("e1")])
    assert result.conflicts == set()
    await store.close()
    again = SQLiteStore(tmp_path / "x.db")
    await again.open()
    try:
        assert await again.load("e1") == (1, b"s")
        assert (await again.commit([_transition("e1")])).conflicts == {"e1"}
    finally:
        await again.close()


async def test_an_in_memory_database_shares_one_connection() -> None:
    store = store_from_url("sqlite:///:memory:")
    await store.open()
    try:
        await store.commit([_transition("e1")])
        assert await store.load("e1") == (1, b"s")
    finally:
        await store.close()


async def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "x.db")
    with pytest.raises(StoreError, match="not open"):
        await store.load("e1")


async def test_a_failed_commit_rolls_back_and_is_a_store_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "x.db")
    await store.open()
    try:
        bad = _transition("e2")
        bad.outbox = [("q", object())]  # type: ignore[list-item]
        with pytest.raises(StoreError):
            await store.commit([_transition("e1"), bad])
        assert await store.load("e1") is None
        assert (await store.commit([_transition("e1")])).conflicts == set()
    finally:
        await store.close()

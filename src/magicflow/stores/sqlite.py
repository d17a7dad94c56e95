"""SQLite store (``sqlite:///PATH``): the embedded default.

WAL journal, ``synchronous=NORMAL`` (a commit survives a process crash; a power loss may lose
the last transactions, never corrupt the database). Every write goes through ONE dedicated
writer thread and connection, so the event loop never blocks on the database and writes never
contend for the lock; reads use a second thread and connection (WAL readers do not block the
writer). Throughput comes from the group commit (``_sqlite_commit``).

URLs follow SQLAlchemy's convention: ``sqlite:///relative/path.db``,
``sqlite:////absolute/path.db``, and ``sqlite:///:memory:`` (one connection for everything).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from magicflow.errors import ConfigurationError, ConflictError, StoreError
from magicflow.stores import _sqlite_commit, _sqlite_hooks, _sqlite_queries
from magicflow.stores._hooks import decode_event_stream, decode_trigger, decode_webhook, encode
from magicflow.stores._sqlite_schema import configure, migrate
from magicflow.stores.base import (
    ApiKeyRecord,
    CommitResult,
    DefinitionRecord,
    DeliveryRecord,
    EventRecord,
    EventStreamRecord,
    ExecutionPage,
    OutboxMessage,
    ScheduleRecord,
    TimerRecord,
    Transition,
    TriggerRecord,
    WebhookRecord,
)

T = TypeVar("T")


def path_from_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ConfigurationError(f"not a SQLite URL: {url!r}")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.netloc or not path:
        raise ConfigurationError(
            f"bad SQLite URL {url!r}: expected sqlite:///relative.db or sqlite:////absolute.db"
        )
    return path


class _Connection:
    """One thread and the one sqlite3 connection it uses (created on that thread)."""

    def __init__(self, path: str, name: str) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None

    def _open(self, query_only: bool) -> None:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=256
        )
        conn.execute("PRAGMA busy_timeout=10000")
        configure(conn)
        if query_only:
            conn.execute("PRAGMA query_only=ON")
        self._conn = conn

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise StoreError("the SQLite store is not open")
        try:
            return fn(self._conn)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite: {exc}") from exc

    async def open(self, query_only: bool = False) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self._open, query_only)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path!r}: {exc}") from exc

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, fn)

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._pool, close)
        self._pool.shutdown(wait=True)


class SQLiteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.schema_version = 0  # set by open()
        self._writer: _Connection | None = None
        self._reader: _Connection | None = None

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        return cls(path_from_url(url))

    async def open(self) -> None:
        if self._writer is not None:
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        writer = _Connection(self.path, "magicflow-sqlite-writer")
        await writer.open()
        self._writer = writer
        self.schema_version = await writer.run(migrate)
        if self.path == ":memory:":
            self._reader = writer
        else:
            self._reader = _Connection(self.path, "magicflow-sqlite-reader")
            await self._reader.open(query_only=True)

    async def close(self) -> None:
        reader, writer = self._reader, self._writer
        self._reader = self._writer = None
        if reader is not None and reader is not writer:
            await reader.close()
        if writer is not None:
            await writer.close()

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise StoreError("the SQLite store is not open")
        return await self._writer.run(fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader is None:
            raise StoreError("the SQLite store is not open")
        return await self._reader.run(fn)

    # -------------------------------------------------------------- definitions

    async def save_definition(self, record: DefinitionRecord) -> bool:
        outcome = await self._write(lambda c: _sqlite_queries.save_definition(c, record))
        if outcome is None:
            raise ConflictError(
                f"workflow {record.name}@{record.version} is already registered "
                "with different content"
            )
        return outcome

    async def get_definition(
        self, name: str, version: str | None = None, *, include_deleted: bool = False
    ) -> DefinitionRecord | None:
        return await self._read(
            lambda c: _sqlite_queries.get_definition(c, name, version, include_deleted)
        )

    async def list_definitions(
        self, name: str | None = None, *, include_deleted: bool = False
    ) -> list[DefinitionRecord]:
        return await self._read(
            lambda c: _sqlite_queries.list_definitions(c, name, include_deleted)
        )

    async def delete_definition(self, name: str, version: str | None = None) -> int:
        return await self._write(lambda c: _sqlite_queries.delete_definition(c, name, version))

    # -------------------------------------------------------------- executions

    async def load(self, execution_id: str) -> tuple[int, bytes] | None:
        found = await self.load_many([execution_id])
        return found.get(execution_id)

    async def load_many(self, execution_ids: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        if not execution_ids:
            return {}
        ids = list(execution_ids)
        return await self._read(lambda c: _sqlite_queries.load_many(c, ids))

    async def commit(
        self, transitions: Sequence[Transition], done_outbox: Sequence[int] = ()
    ) -> CommitResult:
        if not transitions and not done_outbox:
            return CommitResult()
        return await self._write(lambda c: _sqlite_commit.commit(c, transitions, done_outbox))

    async def list_executions(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        parent_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> ExecutionPage:
        return await self._read(
            lambda c: _sqlite_queries.list_executions(c, workflow, status, parent_id, limit, cursor)
        )

    async def non_terminal_executions(self) -> list[str]:
        return await self._read(_sqlite_queries.non_terminal)

    async def find_idempotent(self, workflow: str, key: str) -> str | None:
        return await self._read(lambda c: _sqlite_queries.find_idempotent(c, workflow, key))

    # -------------------------------------------------------------- timers, outbox, breakers

    async def due_timers(self, now: float, limit: int) -> list[TimerRecord]:
        return await self._read(lambda c: _sqlite_queries.timers(c, now, limit))

    async def all_timers(self) -> list[TimerRecord]:
        return await self._read(lambda c: _sqlite_queries.timers(c, None, -1))

    async def pending_outbox(self, limit: int) -> list[OutboxMessage]:
        return await self._read(lambda c: _sqlite_queries.pending_outbox(c, limit))

    async def delete_outbox(self, ids: Sequence[int]) -> None:
        if ids:
            await self.commit((), ids)

    async def load_breakers(self) -> dict[str, bytes]:
        return await self._read(_sqlite_queries.load_breakers)

    async def read_events(
        self, execution_id: str, after: int = 0, limit: int = 100
    ) -> list[EventRecord]:
        return await self._read(
            lambda c: _sqlite_queries.read_events(c, execution_id, after, limit)
        )

    # -------------------------------------------------------------- API keys

    async def save_api_key(self, record: ApiKeyRecord) -> None:
        if not await self._write(lambda c: _sqlite_queries.save_api_key(c, record)):
            raise ConflictError(f"API key {record.id} is already stored")

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        return await self._read(lambda c: _sqlite_queries.find_api_key(c, key_hash))

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        return await self._read(_sqlite_queries.list_api_keys)

    async def revoke_api_key(self, key_id: str, at: float) -> bool:
        return await self._write(lambda c: _sqlite_queries.revoke_api_key(c, key_id, at))

    # -------------------------------------------------------------- webhooks

    async def _insert(self, what: str, table: _sqlite_hooks.Table, **columns: object) -> None:
        if not await self._write(lambda c: _sqlite_hooks.insert(c, table, **columns)):
            raise ConflictError(f"{what} {columns['id']} is already stored")

    async def _delete(self, table: _sqlite_hooks.Table, record_id: str) -> bool:
        return await self._write(lambda c: _sqlite_hooks.delete(c, table, record_id))

    async def save_webhook(self, record: WebhookRecord) -> None:
        await self._insert(
            "webhook", "webhooks", id=record.id, created_at=record.created_at, data=encode(record)
        )

    async def list_webhooks(self) -> list[WebhookRecord]:
        return await self._read(lambda c: _sqlite_hooks.select(c, "webhooks", decode_webhook))

    async def delete_webhook(self, webhook_id: str) -> bool:
        return await self._delete("webhooks", webhook_id)

    async def claim_due_deliveries(
        self, now: float, limit: int, lease_seconds: float
    ) -> list[DeliveryRecord]:
        return await self._write(
            lambda c: _sqlite_hooks.claim_due_deliveries(c, now, limit, lease_seconds)
        )

    async def record_delivery_attempts(self, records: Sequence[DeliveryRecord]) -> None:
        if records:
            await self._write(lambda c: _sqlite_hooks.record_delivery_attempts(c, records))

    async def list_deliveries(self, webhook_id: str, limit: int = 100) -> list[DeliveryRecord]:
        return await self._read(lambda c: _sqlite_hooks.list_deliveries(c, webhook_id, limit))

    # -------------------------------------------------------------- event streams

    async def save_event_stream(self, record: EventStreamRecord) -> None:
        await self._insert(
            "event stream",
            "event_streams",
            id=record.id,
            created_at=record.created_at,
            data=encode(record),
        )

    async def list_event_streams(self) -> list[EventStreamRecord]:
        return await self._read(
            lambda c: _sqlite_hooks.select(c, "event_streams", decode_event_stream)
        )

    async def delete_event_stream(self, stream_id: str) -> bool:
        return await self._delete("event_streams", stream_id)

    # -------------------------------------------------------------- triggers

    async def save_trigger(self, record: TriggerRecord) -> None:
        await self._insert(
            "trigger",
            "triggers",
            id=record.id,
            workflow=record.workflow,
            created_at=record.created_at,
            data=encode(record),
        )

    async def list_triggers(self, workflow: str | None = None) -> list[TriggerRecord]:
        return await self._read(
            lambda c: _sqlite_hooks.select(c, "triggers", decode_trigger, workflow)
        )

    async def delete_trigger(self, trigger_id: str) -> bool:
        return await self._delete("triggers", trigger_id)

    # -------------------------------------------------------------- schedules

    async def save_schedule(self, record: ScheduleRecord) -> None:
        await self._insert(
            "schedule",
            "schedules",
            id=record.id,
            workflow=record.workflow,
            created_at=record.created_at,
            next_run=record.next_run,
            data=encode(record),
        )

    async def list_schedules(self, workflow: str | None = None) -> list[ScheduleRecord]:
        return await self._read(lambda c: _sqlite_hooks.list_schedules(c, workflow))

    async def delete_schedule(self, schedule_id: str) -> bool:
        return await self._delete("schedules", schedule_id)

    async def advance_schedule(self, schedule_id: str, expected: float, next_run: float) -> bool:
        return await self._write(
            lambda c: _sqlite_hooks.advance_schedule(c, schedule_id, expected, next_run)
        )

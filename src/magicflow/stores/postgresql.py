"""PostgreSQL store (``postgresql://user@host:port/db``): the store for several processes.

An asyncpg pool; asyncpg prepares every statement once per connection and caches it. The
tables are created or migrated on ``open`` (``_postgresql_schema``); the group commit is one
transaction per batch (``_postgresql_commit``).

URL options (the query string; the others go to asyncpg, e.g. ``sslmode``): ``schema=NAME``
keeps the tables in that schema (created if missing), ``pool_size=N`` (default 10).

Several service instances over one database: each holds a share of the execution partitions
through leases (``_postgresql_leases``, the ``Leases`` Protocol) and decides only the
executions of its partitions; every commit is still version checked, so an instance that
lost its lease while paused cannot overwrite what the new owner committed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

from magicflow.errors import ConfigurationError, ConflictError, StoreError
from magicflow.stores import _postgresql_commit, _postgresql_leases
from magicflow.stores._hooks import (
    decode_delivery,
    decode_event_stream,
    decode_schedule,
    decode_trigger,
    decode_webhook,
    delivery_due,
    encode,
)
from magicflow.stores._postgresql_schema import migrate
from magicflow.stores.base import (
    LIVE_STATUSES,
    ApiKeyRecord,
    CommitResult,
    DefinitionRecord,
    DeliveryRecord,
    EventRecord,
    EventStreamRecord,
    ExecutionPage,
    ExecutionRecord,
    OutboxMessage,
    ScheduleRecord,
    TimerRecord,
    Transition,
    TriggerRecord,
    WebhookRecord,
    latest,
    version_key,
)

_DEFINITION_COLUMNS = "name, version, digest, document, created_at, source, deleted"
_EXECUTION_COLUMNS = (
    "seq, id, workflow, workflow_version, status, parent_id, created_at, updated_at, version, state"
)
_KEY_COLUMNS = "id, key_hash, role, created_at, revoked_at, name"
_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
# the tables of records kept as JSON: (id, seq, [workflow,] created_at, [next_run,] data)
_Table = Literal["webhooks", "event_streams", "triggers", "schedules"]
T = TypeVar("T")


def _definition(row: asyncpg.Record) -> DefinitionRecord:
    name, version, digest, document, created_at, source, deleted = row
    return DefinitionRecord(name, version, digest, bytes(document), created_at, source, deleted)


def _execution(row: asyncpg.Record) -> ExecutionRecord:
    _, eid, workflow, workflow_version, status, parent_id, created, updated, version, state = row
    return ExecutionRecord(
        eid, workflow, workflow_version, status, parent_id, created, updated, version, bytes(state)
    )


def parse_url(url: str) -> tuple[str, str | None, int]:
    """``(dsn for asyncpg, schema, pool size)``."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(f"not a PostgreSQL URL: {url!r}")
    options = dict(parse_qsl(parts.query))
    schema = options.pop("schema", None)
    try:
        pool_size = int(options.pop("pool_size", "10"))
    except ValueError as exc:
        raise ConfigurationError(f"bad pool_size in {url!r}") from exc
    dsn = urlunsplit(parts._replace(query=urlencode(options)))
    return dsn, schema, pool_size


class PostgreSQLStore:
    def __init__(self, dsn: str, *, schema: str | None = None, pool_size: int = 10) -> None:
        self.dsn, self.schema, self.pool_size = dsn, schema, pool_size
        self.schema_version = 0
        self._pool: asyncpg.Pool | None = None

    @classmethod
    def from_url(cls, url: str) -> PostgreSQLStore:
        dsn, schema, pool_size = parse_url(url)
        return cls(dsn, schema=schema, pool_size=pool_size)

    async def open(self) -> None:
        if self._pool is not None:
            return
        settings = {} if self.schema is None else {"search_path": self.schema}
        try:
            conn = await asyncpg.connect(self.dsn, server_settings=settings)
            try:
                self.schema_version = await migrate(conn, self.schema)
            finally:
                await conn.close()
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                server_settings=settings,
                statement_cache_size=256,
            )
        except _ERRORS as exc:
            raise StoreError(f"PostgreSQL: cannot open {self._where()}: {exc}") from exc

    def _where(self) -> str:
        parts = urlsplit(self.dsn)
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def _conn(self, transaction: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection (in a transaction if asked); driver errors become StoreError."""
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        try:
            async with self._pool.acquire() as conn:
                if transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
        except _ERRORS as exc:
            raise StoreError(f"PostgreSQL: {exc}") from exc

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self._conn() as conn:
            return list(await conn.fetch(sql, *args))

    # -------------------------------------------------------------- definitions

    async def save_definition(self, record: DefinitionRecord) -> bool:
        async with self._conn(transaction=True) as conn:
            created = await conn.fetchval(
                f"INSERT INTO definitions ({_DEFINITION_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, FALSE) ON CONFLICT DO NOTHING RETURNING TRUE",
                record.name,
                record.version,
                record.digest,
                record.document,
                record.created_at,
                record.source,
            )
            if created:
                return True
            undeleted = await conn.fetchval(
                "UPDATE definitions SET deleted = FALSE "
                "WHERE name = $1 AND version = $2 AND digest = $3 RETURNING TRUE",
                record.name,
                record.version,
                record.digest,
            )
        if undeleted:
            return False
        raise ConflictError(
            f"workflow {record.name}@{record.version} is already registered with different content"
        )

    async def get_definition(
        self, name: str, version: str | None = None, *, include_deleted: bool = False
    ) -> DefinitionRecord | None:
        hidden = "" if include_deleted else " AND NOT deleted"
        if version is not None:
            rows = await self._fetch(
                f"SELECT {_DEFINITION_COLUMNS} FROM definitions "
                f"WHERE name = $1 AND version = $2{hidden}",
                name,
                version,
            )
            return _definition(rows[0]) if rows else None
        rows = await self._fetch(
            f"SELECT {_DEFINITION_COLUMNS} FROM definitions WHERE name = $1 AND NOT deleted", name
        )
        return latest([_definition(row) for row in rows])

    async def list_definitions(
        self, name: str | None = None, *, include_deleted: bool = False
    ) -> list[DefinitionRecord]:
        sql = f"SELECT {_DEFINITION_COLUMNS} FROM definitions WHERE ($1::text IS NULL OR name = $1)"
        if not include_deleted:
            sql += " AND NOT deleted"
        records = [_definition(row) for row in await self._fetch(sql, name)]
        records.sort(key=lambda r: (r.name, version_key(r.version)))
        return records

    async def delete_definition(self, name: str, version: str | None = None) -> int:
        rows = await self._fetch(
            "UPDATE definitions SET deleted = TRUE "
            "WHERE name = $1 AND ($2::text IS NULL OR version = $2) AND NOT deleted RETURNING 1",
            name,
            version,
        )
        return len(rows)

    # -------------------------------------------------------------- executions

    async def load(self, execution_id: str) -> tuple[int, bytes] | None:
        found = await self.load_many([execution_id])
        return found.get(execution_id)

    async def load_many(self, execution_ids: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        if not execution_ids:
            return {}
        rows = await self._fetch(
            "SELECT id, version, state FROM executions WHERE id = ANY($1::text[])",
            list(execution_ids),
        )
        return {row[0]: (row[1], bytes(row[2])) for row in rows}

    async def commit(
        self, transitions: Sequence[Transition], done_outbox: Sequence[int] = ()
    ) -> CommitResult:
        if not transitions and not done_outbox:
            return CommitResult()
        async with self._conn() as conn:  # the commit runs (and retries) its transaction
            return await _postgresql_commit.commit(conn, transitions, done_outbox)

    async def list_executions(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        parent_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> ExecutionPage:
        clauses: list[str] = []
        params: list[Any] = []
        filters = (("workflow", workflow), ("status", status), ("parent_id", parent_id))
        for column, value in filters:
            if value is not None:
                params.append(value)
                clauses.append(f"{column} = ${len(params)}")
        if cursor is not None:
            try:
                params.append(int(cursor))
            except ValueError as exc:
                raise ConfigurationError(f"bad cursor {cursor!r}") from exc
            clauses.append(f"seq < ${len(params)}")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(limit + 1)
        rows = await self._fetch(
            f"SELECT {_EXECUTION_COLUMNS} FROM executions {where} "
            f"ORDER BY seq DESC LIMIT ${len(params)}",
            *params,
        )
        items = [_execution(row) for row in rows[:limit]]
        next_cursor = str(rows[limit - 1][0]) if len(rows) > limit else None
        return ExecutionPage(items, next_cursor)

    async def non_terminal_executions(self) -> list[str]:
        rows = await self._fetch(
            "SELECT id FROM executions WHERE status = ANY($1::text[]) ORDER BY seq",
            sorted(LIVE_STATUSES),
        )
        return [row[0] for row in rows]

    async def find_idempotent(self, workflow: str, key: str) -> str | None:
        rows = await self._fetch(
            "SELECT execution_id FROM idempotency WHERE workflow = $1 AND key = $2", workflow, key
        )
        return str(rows[0][0]) if rows else None

    # -------------------------------------------------------------- timers, outbox, breakers

    async def due_timers(self, now: float, limit: int) -> list[TimerRecord]:
        rows = await self._fetch(
            "SELECT execution_id, key, due FROM timers WHERE due <= $1 ORDER BY due LIMIT $2",
            now,
            limit,
        )
        return [TimerRecord(*row) for row in rows]

    async def all_timers(self) -> list[TimerRecord]:
        rows = await self._fetch("SELECT execution_id, key, due FROM timers ORDER BY due")
        return [TimerRecord(*row) for row in rows]

    async def pending_outbox(self, limit: int) -> list[OutboxMessage]:
        rows = await self._fetch("SELECT id, queue, body FROM outbox ORDER BY id LIMIT $1", limit)
        return [OutboxMessage(row[0], row[1], bytes(row[2])) for row in rows]

    async def delete_outbox(self, ids: Sequence[int]) -> None:
        if ids:
            await self.commit((), ids)

    async def load_breakers(self) -> dict[str, bytes]:
        rows = await self._fetch("SELECT function, state FROM breakers")
        return {row[0]: bytes(row[1]) for row in rows}

    async def renew_leases(self, owner: str, partitions: int, ttl: float) -> dict[int, int]:
        async with self._conn() as conn:
            return await _postgresql_leases.renew(conn, owner, partitions, ttl)

    async def release_leases(self, owner: str) -> None:
        async with self._conn() as conn:
            await _postgresql_leases.release(conn, owner)

    async def read_events(
        self, execution_id: str, after: int = 0, limit: int = 100
    ) -> list[EventRecord]:
        rows = await self._fetch(
            "SELECT version, execution_id, at, body FROM events "
            "WHERE execution_id = $1 AND version > $2 ORDER BY version LIMIT $3",
            execution_id,
            after,
            limit,
        )
        return [EventRecord(row[0], row[1], row[2], bytes(row[3])) for row in rows]

    # -------------------------------------------------------------- API keys

    async def save_api_key(self, record: ApiKeyRecord) -> None:
        rows = await self._fetch(
            f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            record.id,
            record.key_hash,
            record.role,
            record.created_at,
            record.revoked_at,
            record.name,
        )
        if not rows:
            raise ConflictError(f"API key {record.id} is already stored")

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        rows = await self._fetch(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = $1", key_hash
        )
        return ApiKeyRecord(*rows[0]) if rows else None

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        rows = await self._fetch(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, seq")
        return [ApiKeyRecord(*row) for row in rows]

    async def revoke_api_key(self, key_id: str, at: float) -> bool:
        rows = await self._fetch(
            "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING 1",
            key_id,
            at,
        )
        return bool(rows)

    # -------------------------------------------------------------- webhooks

    async def _insert(self, what: str, table: _Table, **columns: object) -> None:
        names = ", ".join(columns)
        marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
        rows = await self._fetch(
            f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING RETURNING 1",
            *columns.values(),
        )
        if not rows:
            raise ConflictError(f"{what} {columns['id']} is already stored")

    async def _select(
        self, table: _Table, decode: Callable[[bytes], T], workflow: str | None = None
    ) -> list[T]:
        order = "ORDER BY created_at, seq"
        if workflow is None:
            rows = await self._fetch(f"SELECT data FROM {table} {order}")
        else:
            sql = f"SELECT data FROM {table} WHERE workflow = $1 {order}"
            rows = await self._fetch(sql, workflow)
        return [decode(row[0]) for row in rows]

    async def _delete(self, table: _Table, record_id: str) -> bool:
        rows = await self._fetch(f"DELETE FROM {table} WHERE id = $1 RETURNING 1", record_id)
        return bool(rows)

    async def save_webhook(self, record: WebhookRecord) -> None:
        await self._insert(
            "webhook", "webhooks", id=record.id, created_at=record.created_at, data=encode(record)
        )

    async def list_webhooks(self) -> list[WebhookRecord]:
        return await self._select("webhooks", decode_webhook)

    async def delete_webhook(self, webhook_id: str) -> bool:
        return await self._delete("webhooks", webhook_id)

    async def claim_due_deliveries(
        self, now: float, limit: int, lease_seconds: float
    ) -> list[DeliveryRecord]:
        """One statement: the due rows are locked (``SKIP LOCKED``: rows another claim holds
        are passed over, not waited for) and their due time moved to the end of the lease."""
        rows = await self._fetch(
            "WITH due AS (SELECT id, due, seq FROM deliveries WHERE due IS NOT NULL "
            "AND due <= $1 ORDER BY due, seq LIMIT $2 FOR UPDATE SKIP LOCKED) "
            "UPDATE deliveries d SET due = $3 FROM due WHERE d.id = due.id "
            "RETURNING due.due, due.seq, d.data",
            now,
            limit,
            now + lease_seconds,
        )
        return [decode_delivery(row[2]) for row in sorted(rows, key=lambda row: row[:2])]

    async def record_delivery_attempts(self, records: Sequence[DeliveryRecord]) -> None:
        if not records:
            return
        await self._fetch(
            "UPDATE deliveries d SET due = u.due, data = u.data "
            "FROM unnest($1::text[], $2::float8[], $3::bytea[]) AS u(id, due, data) "
            "WHERE d.id = u.id",
            [r.id for r in records],
            [delivery_due(r) for r in records],
            [encode(r) for r in records],
        )

    async def list_deliveries(self, webhook_id: str, limit: int = 100) -> list[DeliveryRecord]:
        rows = await self._fetch(
            "SELECT data FROM deliveries WHERE webhook_id = $1 "
            "ORDER BY created_at DESC, seq DESC LIMIT $2",
            webhook_id,
            limit,
        )
        return [decode_delivery(row[0]) for row in rows]

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
        return await self._select("event_streams", decode_event_stream)

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
        return await self._select("triggers", decode_trigger, workflow)

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
        rows = await self._fetch(
            "SELECT next_run, data FROM schedules WHERE $1::text IS NULL OR workflow = $1 "
            "ORDER BY created_at, seq",
            workflow,
        )
        return [replace(decode_schedule(row[1]), next_run=row[0]) for row in rows]

    async def delete_schedule(self, schedule_id: str) -> bool:
        return await self._delete("schedules", schedule_id)

    async def advance_schedule(self, schedule_id: str, expected: float, next_run: float) -> bool:
        rows = await self._fetch(
            "UPDATE schedules SET next_run = $3 WHERE id = $1 AND next_run = $2 RETURNING 1",
            schedule_id,
            expected,
            next_run,
        )
        return bool(rows)

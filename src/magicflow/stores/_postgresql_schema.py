"""The PostgreSQL store's tables: migrations applied in order, recorded in
``magicflow_schema_version``.

Append a script to ``MIGRATIONS`` to change the schema; never edit one that has shipped. The
migrations run in one transaction under a transaction-level advisory lock keyed by the schema,
so service instances starting at once against a new database apply each script exactly once
(the others wait, then find nothing left to do).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg  # type: ignore[import-untyped]

MIGRATIONS: tuple[str, ...] = (
    # 1: definitions, executions, timers, outbox, idempotency keys, breakers, events
    """
    CREATE TABLE definitions (
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        digest TEXT NOT NULL,
        document BYTEA NOT NULL,
        source TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        deleted BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (name, version)
    );

    CREATE TABLE executions (
        id TEXT PRIMARY KEY,
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        version BIGINT NOT NULL,
        workflow TEXT NOT NULL,
        workflow_version TEXT NOT NULL,
        status TEXT NOT NULL,
        parent_id TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        state BYTEA NOT NULL
    );
    CREATE UNIQUE INDEX executions_by_seq ON executions (seq);
    CREATE INDEX executions_by_workflow ON executions (workflow, seq);
    CREATE INDEX executions_by_status ON executions (status, seq);
    CREATE INDEX executions_by_parent ON executions (parent_id) WHERE parent_id IS NOT NULL;

    CREATE TABLE timers (
        execution_id TEXT NOT NULL,
        key TEXT NOT NULL,
        due DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (execution_id, key)
    );
    CREATE INDEX timers_by_due ON timers (due);

    CREATE TABLE outbox (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        queue TEXT NOT NULL,
        body BYTEA NOT NULL
    );

    CREATE TABLE idempotency (
        workflow TEXT NOT NULL,
        key TEXT NOT NULL,
        execution_id TEXT NOT NULL,
        PRIMARY KEY (workflow, key)
    );

    CREATE TABLE breakers (
        function TEXT PRIMARY KEY,
        state BYTEA NOT NULL
    );

    CREATE TABLE events (
        execution_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        body BYTEA NOT NULL,
        PRIMARY KEY (execution_id, version)
    );
    """,
    # 2: API keys of the HTTP service (the sha256 of each key, never the key)
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        key_hash TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        name TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    );
    """,
    # 3: webhook subscriptions and their deliveries, cron schedules (records as JSON)
    """
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        created_at DOUBLE PRECISION NOT NULL,
        data BYTEA NOT NULL
    );

    CREATE TABLE deliveries (
        id TEXT PRIMARY KEY,
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        webhook_id TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        due DOUBLE PRECISION,
        data BYTEA NOT NULL
    );
    CREATE INDEX deliveries_by_due ON deliveries (due) WHERE due IS NOT NULL;
    CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, created_at);

    CREATE TABLE schedules (
        id TEXT PRIMARY KEY,
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        workflow TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        next_run DOUBLE PRECISION NOT NULL,
        data BYTEA NOT NULL
    );
    """,
    # 4: partition leases of the service instances (stores/_postgresql_leases.py)
    """
    CREATE TABLE partition_leases (
        partition INTEGER PRIMARY KEY,
        owner TEXT,
        epoch BIGINT NOT NULL DEFAULT 0,
        lease_until DOUBLE PRECISION NOT NULL DEFAULT 0
    );

    CREATE TABLE service_instances (
        owner TEXT PRIMARY KEY,
        seen DOUBLE PRECISION NOT NULL
    );
    """,
    # 5: event streams (lifecycle events published to a broker) and event triggers
    """
    CREATE TABLE event_streams (
        id TEXT PRIMARY KEY,
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        created_at DOUBLE PRECISION NOT NULL,
        data BYTEA NOT NULL
    );

    CREATE TABLE triggers (
        id TEXT PRIMARY KEY,
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        workflow TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        data BYTEA NOT NULL
    );
    """,
)

_LOCK = "SELECT pg_advisory_xact_lock(hashtext('magicflow.schema:' || $1))"
_TABLE = "CREATE TABLE IF NOT EXISTS magicflow_schema_version (version INTEGER PRIMARY KEY)"
_CURRENT = "SELECT coalesce(max(version), 0) FROM magicflow_schema_version"


async def migrate(conn: asyncpg.Connection, schema: str | None) -> int:
    """Apply the migrations this database (or ``schema``, created if missing) has not seen;
    the schema version it ends at."""
    async with conn.transaction():
        await conn.execute(_LOCK, schema or await conn.fetchval("SELECT current_schema()"))
        if schema is not None:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
        await conn.execute(_TABLE)
        version = int(await conn.fetchval(_CURRENT))
        while version < len(MIGRATIONS):
            await conn.execute(MIGRATIONS[version])
            version += 1
            await conn.execute("INSERT INTO magicflow_schema_version VALUES ($1)", version)
    return version


def quote(identifier: str) -> str:
    """``identifier`` as a quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'

"""The SQLite store's tables: migrations applied in order, recorded in ``schema_version``.

Append a script to ``MIGRATIONS`` to change the schema; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA cache_size=-65536",  # 64 MiB
    "PRAGMA foreign_keys=OFF",
)

MIGRATIONS: tuple[str, ...] = (
    # 1: definitions, executions, timers, outbox, idempotency keys, breakers, events
    """
    CREATE TABLE definitions (
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        digest TEXT NOT NULL,
        document BLOB NOT NULL,
        source TEXT,
        created_at REAL NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (name, version)
    ) WITHOUT ROWID;

    CREATE TABLE executions (
        id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        workflow TEXT NOT NULL,
        workflow_version TEXT NOT NULL,
        status TEXT NOT NULL,
        parent_id TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        state BLOB NOT NULL
    );
    CREATE INDEX executions_by_workflow ON executions (workflow);
    CREATE INDEX executions_by_status ON executions (status);
    CREATE INDEX executions_by_parent ON executions (parent_id) WHERE parent_id IS NOT NULL;

    CREATE TABLE timers (
        execution_id TEXT NOT NULL,
        key TEXT NOT NULL,
        due REAL NOT NULL,
        PRIMARY KEY (execution_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX timers_by_due ON timers (due);

    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        body BLOB NOT NULL
    );

    CREATE TABLE idempotency (
        workflow TEXT NOT NULL,
        key TEXT NOT NULL,
        execution_id TEXT NOT NULL,
        PRIMARY KEY (workflow, key)
    ) WITHOUT ROWID;

    CREATE TABLE breakers (
        function TEXT PRIMARY KEY,
        state BLOB NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE events (
        execution_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        at REAL NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (execution_id, version)
    ) WITHOUT ROWID;
    """,
    # 2: API keys of the HTTP service (the sha256 of each key, never the key)
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        key_hash TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        name TEXT,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    """,
    # 3: webhook subscriptions and their deliveries, cron schedules (records as JSON)
    """
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        data BLOB NOT NULL
    );

    CREATE TABLE deliveries (
        id TEXT PRIMARY KEY,
        webhook_id TEXT NOT NULL,
        created_at REAL NOT NULL,
        due REAL,
        data BLOB NOT NULL
    );
    CREATE INDEX deliveries_by_due ON deliveries (due) WHERE due IS NOT NULL;
    CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, created_at);

    CREATE TABLE schedules (
        id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        created_at REAL NOT NULL,
        next_run REAL NOT NULL,
        data BLOB NOT NULL
    );
    """,
    # 4: event streams (lifecycle events published to a broker) and event triggers
    """
    CREATE TABLE event_streams (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        data BLOB NOT NULL
    );

    CREATE TABLE triggers (
        id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        created_at REAL NOT NULL,
        data BLOB NOT NULL
    );
    """,
)


def configure(conn: sqlite3.Connection) -> None:
    for pragma in PRAGMAS:
        conn.execute(pragma)


def current_version(conn: sqlite3.Connection) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations this database has not seen; the schema version it ends at.

    Each migration runs in its own transaction under the write lock, so two processes opening
    a new database at once apply it once.
    """
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = current_version(conn)
            if version >= len(MIGRATIONS):
                conn.execute("COMMIT")
                return version
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    """Split a script into statements (``executescript`` would commit our transaction)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return statements

"""The SQLite store's statements other than the group commit (run on its threads)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from magicflow.stores.base import (
    LIVE_STATUSES,
    ApiKeyRecord,
    DefinitionRecord,
    EventRecord,
    ExecutionPage,
    ExecutionRecord,
    OutboxMessage,
    TimerRecord,
    latest,
    version_key,
)

_encode_list = msgspec.json.Encoder().encode

_DEFINITION_COLUMNS = "name, version, digest, document, created_at, source, deleted"
_EXECUTION_COLUMNS = (
    "id, workflow, workflow_version, status, parent_id, created_at, updated_at, version, state"
)


def _definition(row: tuple[Any, ...]) -> DefinitionRecord:
    name, version, digest, document, created_at, source, deleted = row
    return DefinitionRecord(
        name, version, digest, bytes(document), created_at, source, bool(deleted)
    )


def _execution(row: tuple[Any, ...]) -> ExecutionRecord:
    _, eid, workflow, workflow_version, status, parent_id, created, updated, version, state = row
    return ExecutionRecord(
        eid, workflow, workflow_version, status, parent_id, created, updated, version, bytes(state)
    )


# ------------------------------------------------------------------ definitions


def save_definition(conn: sqlite3.Connection, record: DefinitionRecord) -> bool | None:
    """True: created; False: identical already stored (undeleted); None: other content."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(
            "SELECT digest FROM definitions WHERE name = ? AND version = ?",
            (record.name, record.version),
        ).fetchone()
        if row is None:
            conn.execute(
                f"INSERT INTO definitions ({_DEFINITION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 0)",
                (
                    record.name,
                    record.version,
                    record.digest,
                    record.document,
                    record.created_at,
                    record.source,
                ),
            )
            outcome: bool | None = True
        elif row[0] == record.digest:
            conn.execute(
                "UPDATE definitions SET deleted = 0 WHERE name = ? AND version = ?",
                (record.name, record.version),
            )
            outcome = False
        else:
            outcome = None
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return outcome


def get_definition(
    conn: sqlite3.Connection, name: str, version: str | None, include_deleted: bool
) -> DefinitionRecord | None:
    if version is not None:
        row = conn.execute(
            f"SELECT {_DEFINITION_COLUMNS} FROM definitions WHERE name = ? AND version = ?",
            (name, version),
        ).fetchone()
        if row is None or (row[6] and not include_deleted):
            return None
        return _definition(row)
    rows = conn.execute(
        f"SELECT {_DEFINITION_COLUMNS} FROM definitions WHERE name = ? AND deleted = 0", (name,)
    ).fetchall()
    return latest([_definition(row) for row in rows])


def list_definitions(
    conn: sqlite3.Connection, name: str | None, include_deleted: bool
) -> list[DefinitionRecord]:
    sql = f"SELECT {_DEFINITION_COLUMNS} FROM definitions WHERE (? IS NULL OR name = ?)"
    if not include_deleted:
        sql += " AND deleted = 0"
    records = [_definition(row) for row in conn.execute(sql, (name, name))]
    records.sort(key=lambda r: (r.name, version_key(r.version)))
    return records


def delete_definition(conn: sqlite3.Connection, name: str, version: str | None) -> int:
    cursor = conn.execute(
        "UPDATE definitions SET deleted = 1 "
        "WHERE name = ? AND (? IS NULL OR version = ?) AND deleted = 0",
        (name, version, version),
    )
    return cursor.rowcount


# ------------------------------------------------------------------ executions


def load_many(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, tuple[int, bytes]]:
    found: dict[str, tuple[int, bytes]] = {}
    for start in range(0, len(ids), 5000):
        rows = conn.execute(
            "SELECT id, version, state FROM executions "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (_encode_list(ids[start : start + 5000]),),
        )
        for execution_id, version, state in rows:
            found[execution_id] = (version, bytes(state))
    return found


def list_executions(
    conn: sqlite3.Connection,
    workflow: str | None,
    status: str | None,
    parent_id: str | None,
    limit: int,
    cursor: str | None,
) -> ExecutionPage:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("workflow", workflow), ("status", status), ("parent_id", parent_id)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if cursor is not None:
        clauses.append("rowid < ?")
        params.append(int(cursor))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        f"SELECT rowid, {_EXECUTION_COLUMNS} FROM executions {where} ORDER BY rowid DESC LIMIT ?",
        (*params, limit + 1),
    ).fetchall()
    items = [_execution(row) for row in rows[:limit]]
    next_cursor = str(rows[limit - 1][0]) if len(rows) > limit else None
    return ExecutionPage(items, next_cursor)


def non_terminal(conn: sqlite3.Connection) -> list[str]:
    marks = ", ".join("?" * len(LIVE_STATUSES))
    rows = conn.execute(
        f"SELECT id FROM executions WHERE status IN ({marks}) ORDER BY rowid",
        sorted(LIVE_STATUSES),
    )
    return [row[0] for row in rows]


def find_idempotent(conn: sqlite3.Connection, workflow: str, key: str) -> str | None:
    row = conn.execute(
        "SELECT execution_id FROM idempotency WHERE workflow = ? AND key = ?", (workflow, key)
    ).fetchone()
    return None if row is None else str(row[0])


# ------------------------------------------------------------------ timers, outbox, breakers


def timers(conn: sqlite3.Connection, now: float | None, limit: int) -> list[TimerRecord]:
    if now is None:
        rows = conn.execute("SELECT execution_id, key, due FROM timers ORDER BY due")
    else:
        rows = conn.execute(
            "SELECT execution_id, key, due FROM timers WHERE due <= ? ORDER BY due LIMIT ?",
            (now, limit),
        )
    return [TimerRecord(*row) for row in rows]


def pending_outbox(conn: sqlite3.Connection, limit: int) -> list[OutboxMessage]:
    rows = conn.execute("SELECT id, queue, body FROM outbox ORDER BY id LIMIT ?", (limit,))
    return [OutboxMessage(i, queue, bytes(body)) for i, queue, body in rows]


def load_breakers(conn: sqlite3.Connection) -> dict[str, bytes]:
    return {
        name: bytes(state) for name, state in conn.execute("SELECT function, state FROM breakers")
    }


def read_events(
    conn: sqlite3.Connection, execution_id: str, after: int, limit: int
) -> list[EventRecord]:
    rows = conn.execute(
        "SELECT version, execution_id, at, body FROM events "
        "WHERE execution_id = ? AND version > ? ORDER BY version LIMIT ?",
        (execution_id, after, limit),
    )
    return [EventRecord(i, e, at, bytes(body)) for i, e, at, body in rows]


# ------------------------------------------------------------------ API keys

_KEY_COLUMNS = "id, key_hash, role, created_at, revoked_at, name"


def save_api_key(conn: sqlite3.Connection, record: ApiKeyRecord) -> bool:
    """False when the id or the hash is taken."""
    try:
        conn.execute(
            f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (
                record.id,
                record.key_hash,
                record.role,
                record.created_at,
                record.revoked_at,
                record.name,
            ),
        )
    except sqlite3.IntegrityError:
        return False
    return True


def find_api_key(conn: sqlite3.Connection, key_hash: str) -> ApiKeyRecord | None:
    row = conn.execute(
        f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,)
    ).fetchone()
    return None if row is None else ApiKeyRecord(*row)


def list_api_keys(conn: sqlite3.Connection) -> list[ApiKeyRecord]:
    rows = conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, rowid")
    return [ApiKeyRecord(*row) for row in rows]


def revoke_api_key(conn: sqlite3.Connection, key_id: str, at: float) -> bool:
    cursor = conn.execute(
        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (at, key_id)
    )
    return cursor.rowcount > 0

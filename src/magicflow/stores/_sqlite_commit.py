"""The SQLite group commit: many transitions in one transaction (runs on the writer thread).

This is the hot path of the whole product: every statement is prepared once (sqlite3 caches
statements by their text) and executed with ``executemany`` over the whole batch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import msgspec

from magicflow.stores.base import CommitResult, OutboxMessage, Transition

_VERSIONS = "SELECT id, version FROM executions WHERE id IN (SELECT value FROM json_each(?))"
_IDEMPOTENT = "SELECT 1 FROM idempotency WHERE workflow = ? AND key = ?"
_UPSERT = (
    "INSERT INTO executions (id, version, workflow, workflow_version, status, parent_id, "
    "created_at, updated_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET version = excluded.version, status = excluded.status, "
    "updated_at = excluded.updated_at, state = excluded.state"
)
_TIMER_DELETE = "DELETE FROM timers WHERE execution_id = ? AND key = ?"
_TIMER_SET = "INSERT OR REPLACE INTO timers (execution_id, key, due) VALUES (?, ?, ?)"
_OUTBOX_SEQ = "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'"
_OUTBOX_INSERT = "INSERT INTO outbox (id, queue, body) VALUES (?, ?, ?)"
_OUTBOX_DELETE = "DELETE FROM outbox WHERE id = ?"
_BREAKER = "INSERT OR REPLACE INTO breakers (function, state) VALUES (?, ?)"
_IDEMPOTENCY = "INSERT INTO idempotency (workflow, key, execution_id) VALUES (?, ?, ?)"
_EVENT = "INSERT INTO events (execution_id, at, body) VALUES (?, ?, ?)"

_encode_ids = msgspec.json.Encoder().encode


class _Rows:
    """The rows one batch writes, table by table."""

    __slots__ = ("breakers", "events", "executions", "idempotency", "outbox", "timer_del", "timers")

    def __init__(self) -> None:
        self.executions: list[tuple[object, ...]] = []
        self.timer_del: list[tuple[str, str]] = []
        self.timers: list[tuple[str, str, float]] = []
        self.outbox: list[tuple[str, bytes]] = []
        self.breakers: list[tuple[str, bytes]] = []
        self.idempotency: list[tuple[str, str, str]] = []
        self.events: list[tuple[str, float, bytes]] = []

    def add(self, t: Transition, version: int) -> None:
        eid = t.execution_id
        self.executions.append(
            (
                eid,
                version,
                t.workflow,
                t.workflow_version,
                t.status,
                t.parent_id,
                t.created_at,
                t.updated_at,
                t.state,
            )
        )
        if t.timers_deleted:
            self.timer_del.extend([(eid, key) for key in t.timers_deleted])
        if t.timers_set:
            self.timers.extend([(eid, key, due) for key, due in t.timers_set])
        if t.outbox:
            self.outbox.extend(t.outbox)
        if t.breakers:
            self.breakers.extend(t.breakers)
        if t.idempotency_key is not None and t.expected_version == 0:
            self.idempotency.append((t.workflow, t.idempotency_key, eid))
        if t.events is not None:
            self.events.append((eid, t.updated_at, t.events))


def commit(
    conn: sqlite3.Connection, transitions: Sequence[Transition], done_outbox: Sequence[int]
) -> CommitResult:
    result = CommitResult()
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = _check(conn, transitions, result)
        _write(conn, rows, result)
        if done_outbox:
            conn.executemany(_OUTBOX_DELETE, [(i,) for i in done_outbox])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        result.outbox.clear()
        raise
    return result


def _check(
    conn: sqlite3.Connection, transitions: Sequence[Transition], result: CommitResult
) -> _Rows:
    current: dict[str, int] = {}
    for start in range(0, len(transitions), 5000):
        ids = [t.execution_id for t in transitions[start : start + 5000]]
        current.update(conn.execute(_VERSIONS, (_encode_ids(ids),)).fetchall())
    conflicts = result.conflicts
    keys: set[tuple[str, str]] = set()
    rows = _Rows()
    for t in transitions:
        eid = t.execution_id
        if eid in conflicts or current.get(eid, 0) != t.expected_version:
            conflicts.add(eid)
            continue
        if t.expected_version == 0 and t.idempotency_key is not None:
            key = (t.workflow, t.idempotency_key)
            if key in keys or conn.execute(_IDEMPOTENT, key).fetchone() is not None:
                conflicts.add(eid)
                continue
            keys.add(key)
        current[eid] = t.expected_version + 1
        rows.add(t, t.expected_version + 1)
    return rows


def _write(conn: sqlite3.Connection, rows: _Rows, result: CommitResult) -> None:
    if rows.executions:
        conn.executemany(_UPSERT, rows.executions)
    if rows.timer_del:
        conn.executemany(_TIMER_DELETE, rows.timer_del)
    if rows.timers:
        conn.executemany(_TIMER_SET, rows.timers)
    if rows.outbox:
        seq = conn.execute(_OUTBOX_SEQ).fetchone()  # AUTOINCREMENT: ids are never reused
        first = (seq[0] if seq else 0) + 1
        messages = [
            OutboxMessage(first + n, queue, body) for n, (queue, body) in enumerate(rows.outbox)
        ]
        conn.executemany(_OUTBOX_INSERT, messages)
        result.outbox = messages
    if rows.breakers:
        conn.executemany(_BREAKER, rows.breakers)
    if rows.idempotency:
        conn.executemany(_IDEMPOTENCY, rows.idempotency)
    if rows.events:
        conn.executemany(_EVENT, rows.events)

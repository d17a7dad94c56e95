"""The SQLite group commit: many transitions in one transaction (runs on the writer thread).

This is the hot path of the whole product. Python's sqlite3 releases the GIL around every
``sqlite3_step``; with ``executemany`` that is once per row, and each time the writer thread
must win the GIL back from a busy event loop (measured: the commit rate halves under load).
So rows go in as multi-row ``INSERT ... VALUES (...), (...)`` statements of up to 512 rows
(sizes are powers of two, so few distinct statements are prepared and cached), version
checks come back as one JSON row, and outbox deletions as id ranges.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import msgspec

from magicflow.stores._hooks import delivery_due, encode
from magicflow.stores.base import CommitResult, OutboxMessage, Transition

_VERSIONS = (
    "SELECT json_group_object(id, version) FROM executions "
    "WHERE id IN (SELECT value FROM json_each(?))"
)
_IDEMPOTENT = "SELECT 1 FROM idempotency WHERE workflow = ? AND key = ?"
_OUTBOX_SEQ = "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'"
_OUTBOX_DELETE = "DELETE FROM outbox WHERE id BETWEEN ? AND ?"

_encode = msgspec.json.Encoder().encode
_decode_versions = msgspec.json.Decoder(dict[str, int]).decode


class _Multi:
    """One multi-row statement: ``head`` + ``(?, ...)`` × rows + ``tail``."""

    CHUNK = 512

    def __init__(self, head: str, width: int, tail: str = "", close: str = "") -> None:
        self.head, self.width, self.tail, self.close = head, width, tail, close
        self._sql: dict[int, str] = {}
        self._row = "(" + ", ".join("?" * width) + ")"

    def _statement(self, rows: int) -> str:
        sql = self._sql.get(rows)
        if sql is None:
            sql = self._sql[rows] = (
                f"{self.head} {', '.join([self._row] * rows)}{self.close} {self.tail}"
            )
        return sql

    def run(self, conn: sqlite3.Connection, flat: list[object]) -> None:
        width = self.width
        total = len(flat) // width
        done = 0
        while done < total:
            left = total - done
            rows = self.CHUNK if left >= self.CHUNK else 1 << (left.bit_length() - 1)
            conn.execute(self._statement(rows), flat[done * width : (done + rows) * width])
            done += rows


_EXECUTIONS = _Multi(
    "INSERT INTO executions (id, version, workflow, workflow_version, status, parent_id, "
    "created_at, updated_at, state) VALUES",
    9,
    "ON CONFLICT (id) DO UPDATE SET version = excluded.version, status = excluded.status, "
    "updated_at = excluded.updated_at, state = excluded.state",
)
_TIMERS_DELETE = _Multi("DELETE FROM timers WHERE (execution_id, key) IN (VALUES", 2, close=")")
_TIMERS = _Multi("INSERT OR REPLACE INTO timers (execution_id, key, due) VALUES", 3)
_OUTBOX = _Multi("INSERT INTO outbox (id, queue, body) VALUES", 3)
_BREAKERS = _Multi("INSERT OR REPLACE INTO breakers (function, state) VALUES", 2)
_IDEMPOTENCY = _Multi("INSERT INTO idempotency (workflow, key, execution_id) VALUES", 3)
_EVENTS = _Multi("INSERT INTO events (execution_id, version, at, body) VALUES", 4)
_DELIVERIES = _Multi(
    "INSERT INTO deliveries (id, webhook_id, created_at, due, data) VALUES",
    5,
    "ON CONFLICT DO NOTHING",
)


class _Rows:
    """The values one batch writes, table by table, flattened row after row."""

    __slots__ = (
        "breakers",
        "deliveries",
        "events",
        "executions",
        "idempotency",
        "outbox",
        "timer_del",
        "timers",
    )

    def __init__(self) -> None:
        self.executions: list[object] = []
        self.timer_del: list[object] = []
        self.timers: list[object] = []
        self.outbox: list[tuple[str, bytes]] = []
        self.breakers: list[object] = []
        self.idempotency: list[object] = []
        self.events: list[object] = []
        self.deliveries: list[object] = []

    def add(self, t: Transition, version: int) -> None:
        eid = t.execution_id
        self.executions += (
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
        for key in t.timers_deleted:
            self.timer_del += (eid, key)
        for key, due in t.timers_set:
            self.timers += (eid, key, due)
        if t.outbox:
            self.outbox.extend(t.outbox)
        for function, state in t.breakers:
            self.breakers += (function, state)
        if t.idempotency_key is not None and t.expected_version == 0:
            self.idempotency += (t.workflow, t.idempotency_key, eid)
        if t.events is not None:
            self.events += (eid, version, t.updated_at, t.events)
        for d in t.deliveries:
            self.deliveries += (d.id, d.webhook_id, d.created_at, delivery_due(d), encode(d))


def commit(
    conn: sqlite3.Connection, transitions: Sequence[Transition], done_outbox: Sequence[int]
) -> CommitResult:
    result = CommitResult()
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = _check(conn, transitions, result)
        _write(conn, rows, result)
        if done_outbox:
            conn.executemany(_OUTBOX_DELETE, _ranges(done_outbox))
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
        found = conn.execute(_VERSIONS, (_encode(ids),)).fetchone()[0]
        current.update(_decode_versions(found))
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
        _EXECUTIONS.run(conn, rows.executions)
    if rows.timer_del:
        _TIMERS_DELETE.run(conn, rows.timer_del)
    if rows.timers:
        _TIMERS.run(conn, rows.timers)
    if rows.outbox:
        seq = conn.execute(_OUTBOX_SEQ).fetchone()  # AUTOINCREMENT: ids are never reused
        first = (seq[0] if seq else 0) + 1
        messages = [
            OutboxMessage(first + n, queue, body) for n, (queue, body) in enumerate(rows.outbox)
        ]
        _OUTBOX.run(conn, [value for message in messages for value in message])
        result.outbox = messages
    if rows.breakers:
        _BREAKERS.run(conn, rows.breakers)
    if rows.idempotency:
        _IDEMPOTENCY.run(conn, rows.idempotency)
    if rows.events:
        _EVENTS.run(conn, rows.events)
    if rows.deliveries:
        _DELIVERIES.run(conn, rows.deliveries)


def _ranges(ids: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted ids as inclusive ``(first, last)`` runs of consecutive numbers."""
    ranges: list[tuple[int, int]] = []
    ordered = sorted(ids)
    first = last = ordered[0]
    for outbox_id in ordered[1:]:
        if outbox_id != last + 1:
            ranges.append((first, last))
            first = outbox_id
        last = outbox_id
    ranges.append((first, last))
    return ranges

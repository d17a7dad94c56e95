"""The SQLite store's queries for webhooks, event streams, deliveries, triggers and schedules
(each a function of a connection, run on the store's writer or reader thread)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Literal, TypeVar

from magicflow.stores._hooks import decode_delivery, decode_schedule, delivery_due, encode
from magicflow.stores.base import DeliveryRecord, ScheduleRecord

T = TypeVar("T")

# the tables of records kept as JSON: (id, [workflow,] created_at, [next_run,] data)
Table = Literal["webhooks", "event_streams", "triggers", "schedules"]


def insert(conn: sqlite3.Connection, table: Table, **columns: object) -> bool:
    """Insert a row of a record table; False when its id is taken."""
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    cursor = conn.execute(
        f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING",
        tuple(columns.values()),
    )
    return cursor.rowcount > 0


def select(
    conn: sqlite3.Connection,
    table: Table,
    decode: Callable[[bytes], T],
    workflow: str | None = None,
) -> list[T]:
    """The records of a table (of ``workflow`` when given), oldest first."""
    where, params = ("WHERE workflow = ?", (workflow,)) if workflow is not None else ("", ())
    rows = conn.execute(f"SELECT data FROM {table} {where} ORDER BY created_at, rowid", params)
    return [decode(data) for (data,) in rows]


def delete(conn: sqlite3.Connection, table: Table, record_id: str) -> bool:
    return conn.execute(f"DELETE FROM {table} WHERE id = ?", (record_id,)).rowcount > 0


def claim_due_deliveries(
    conn: sqlite3.Connection, now: float, limit: int, lease_seconds: float
) -> list[DeliveryRecord]:
    """Read the due deliveries and move their due time to the end of the lease, in one write
    transaction (other processes wait for the lock)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute(
            "SELECT id, data FROM deliveries WHERE due IS NOT NULL AND due <= ? "
            "ORDER BY due, rowid LIMIT ?",
            (now, limit),
        ).fetchall()
        conn.executemany(
            "UPDATE deliveries SET due = ? WHERE id = ?",
            [(now + lease_seconds, delivery_id) for delivery_id, _ in rows],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return [decode_delivery(data) for _, data in rows]


def record_delivery_attempts(conn: sqlite3.Connection, records: Sequence[DeliveryRecord]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "UPDATE deliveries SET due = ?, data = ? WHERE id = ?",
            [(delivery_due(record), encode(record), record.id) for record in records],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def list_deliveries(conn: sqlite3.Connection, webhook_id: str, limit: int) -> list[DeliveryRecord]:
    rows = conn.execute(
        "SELECT data FROM deliveries WHERE webhook_id = ? "
        "ORDER BY created_at DESC, rowid DESC LIMIT ?",
        (webhook_id, limit),
    )
    return [decode_delivery(data) for (data,) in rows]


def list_schedules(conn: sqlite3.Connection, workflow: str | None) -> list[ScheduleRecord]:
    rows = conn.execute(
        "SELECT next_run, data FROM schedules WHERE ? IS NULL OR workflow = ? "
        "ORDER BY created_at, rowid",
        (workflow, workflow),
    )
    return [replace(decode_schedule(data), next_run=next_run) for next_run, data in rows]


def advance_schedule(
    conn: sqlite3.Connection, schedule_id: str, expected: float, next_run: float
) -> bool:
    cursor = conn.execute(
        "UPDATE schedules SET next_run = ? WHERE id = ? AND next_run = ?",
        (next_run, schedule_id, expected),
    )
    return cursor.rowcount > 0

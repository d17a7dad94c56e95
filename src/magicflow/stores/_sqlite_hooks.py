"""The SQLite store's queries for webhooks, deliveries and schedules (each a function of a
connection, run on the store's writer or reader thread)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace

from magicflow.stores._hooks import decode_delivery, decode_schedule, decode_webhook, encode
from magicflow.stores.base import DeliveryRecord, ScheduleRecord, WebhookRecord


def _due(record: DeliveryRecord) -> float | None:
    return record.next_attempt if record.status == "pending" else None


def save_webhook(conn: sqlite3.Connection, record: WebhookRecord) -> bool:
    """False when the id is taken."""
    cursor = conn.execute(
        "INSERT INTO webhooks (id, created_at, data) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        (record.id, record.created_at, encode(record)),
    )
    return cursor.rowcount > 0


def list_webhooks(conn: sqlite3.Connection) -> list[WebhookRecord]:
    rows = conn.execute("SELECT data FROM webhooks ORDER BY created_at, rowid")
    return [decode_webhook(data) for (data,) in rows]


def delete_webhook(conn: sqlite3.Connection, webhook_id: str) -> bool:
    return conn.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,)).rowcount > 0


def enqueue_deliveries(conn: sqlite3.Connection, records: Sequence[DeliveryRecord]) -> int:
    new = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        for record in records:
            cursor = conn.execute(
                "INSERT INTO deliveries (id, webhook_id, created_at, due, data) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (record.id, record.webhook_id, record.created_at, _due(record), encode(record)),
            )
            new += cursor.rowcount
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return new


def due_deliveries(conn: sqlite3.Connection, now: float, limit: int) -> list[DeliveryRecord]:
    rows = conn.execute(
        "SELECT data FROM deliveries WHERE due IS NOT NULL AND due <= ? ORDER BY due LIMIT ?",
        (now, limit),
    )
    return [decode_delivery(data) for (data,) in rows]


def record_delivery_attempt(conn: sqlite3.Connection, record: DeliveryRecord) -> None:
    conn.execute(
        "UPDATE deliveries SET due = ?, data = ? WHERE id = ?",
        (_due(record), encode(record), record.id),
    )


def list_deliveries(conn: sqlite3.Connection, webhook_id: str, limit: int) -> list[DeliveryRecord]:
    rows = conn.execute(
        "SELECT data FROM deliveries WHERE webhook_id = ? "
        "ORDER BY created_at DESC, rowid DESC LIMIT ?",
        (webhook_id, limit),
    )
    return [decode_delivery(data) for (data,) in rows]


def save_schedule(conn: sqlite3.Connection, record: ScheduleRecord) -> bool:
    """False when the id is taken."""
    cursor = conn.execute(
        "INSERT INTO schedules (id, workflow, created_at, next_run, data) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (record.id, record.workflow, record.created_at, record.next_run, encode(record)),
    )
    return cursor.rowcount > 0


def list_schedules(conn: sqlite3.Connection, workflow: str | None) -> list[ScheduleRecord]:
    rows = conn.execute(
        "SELECT next_run, data FROM schedules WHERE ? IS NULL OR workflow = ? "
        "ORDER BY created_at, rowid",
        (workflow, workflow),
    )
    return [replace(decode_schedule(data), next_run=next_run) for next_run, data in rows]


def delete_schedule(conn: sqlite3.Connection, schedule_id: str) -> bool:
    return conn.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,)).rowcount > 0


def advance_schedule(
    conn: sqlite3.Connection, schedule_id: str, expected: float, next_run: float
) -> bool:
    cursor = conn.execute(
        "UPDATE schedules SET next_run = ? WHERE id = ? AND next_run = ?",
        (next_run, schedule_id, expected),
    )
    return cursor.rowcount > 0

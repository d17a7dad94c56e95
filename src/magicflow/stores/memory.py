"""In-memory store (``memory://``): the testing harness's backend, and the reference semantics.

Everything lives in this process and is lost with it. It keeps exactly the semantics of the
durable backends (the contract suite runs against it too), so tests written against it hold
on SQLite and PostgreSQL.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from magicflow.errors import ConflictError
from magicflow.stores.base import (
    TERMINAL_STATUSES,
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
    fair_share,
    latest,
    version_key,
)


@dataclass(slots=True)
class _Row:
    seq: int  # creation order, the listing cursor
    record: ExecutionRecord


class MemoryStore:
    def __init__(self) -> None:
        self._definitions: dict[tuple[str, str], DefinitionRecord] = {}
        self._executions: dict[str, _Row] = {}
        self._order: list[str] = []  # execution ids in creation order (seq - 1 is the index)
        self._timers: dict[tuple[str, str], float] = {}
        self._outbox: dict[int, OutboxMessage] = {}
        self._idempotency: dict[tuple[str, str], str] = {}
        self._breakers: dict[str, bytes] = {}
        self._events: dict[str, list[EventRecord]] = {}
        self._api_keys: dict[str, ApiKeyRecord] = {}  # by id, in creation order
        self._webhooks: dict[str, WebhookRecord] = {}  # in creation order
        self._deliveries: dict[str, DeliveryRecord] = {}  # in creation order
        self._claims: dict[str, float] = {}  # claimed delivery id -> due again at
        self._streams: dict[str, EventStreamRecord] = {}  # in creation order
        self._triggers: dict[str, TriggerRecord] = {}  # in creation order
        self._schedules: dict[str, ScheduleRecord] = {}  # in creation order
        self._leases: dict[int, tuple[str | None, int, float]] = {}  # owner, epoch, until
        self._instances: dict[str, float] = {}  # owner -> last heartbeat
        self._ids = itertools.count(1)  # outbox ids
        self._seq = itertools.count(1)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -------------------------------------------------------------- definitions

    async def save_definition(self, record: DefinitionRecord) -> bool:
        key = (record.name, record.version)
        existing = self._definitions.get(key)
        if existing is None:
            self._definitions[key] = replace(record, deleted=False)
            return True
        if existing.digest != record.digest:
            raise ConflictError(
                f"workflow {record.name}@{record.version} is already registered "
                "with different content"
            )
        if existing.deleted:
            self._definitions[key] = replace(existing, deleted=False)
        return False

    async def get_definition(
        self, name: str, version: str | None = None, *, include_deleted: bool = False
    ) -> DefinitionRecord | None:
        if version is not None:
            record = self._definitions.get((name, version))
            if record is None or (record.deleted and not include_deleted):
                return None
            return record
        return latest([r for (n, _), r in self._definitions.items() if n == name and not r.deleted])

    async def list_definitions(
        self, name: str | None = None, *, include_deleted: bool = False
    ) -> list[DefinitionRecord]:
        records = [
            r
            for r in self._definitions.values()
            if (name is None or r.name == name) and (include_deleted or not r.deleted)
        ]
        records.sort(key=lambda r: (r.name, version_key(r.version)))
        return records

    async def delete_definition(self, name: str, version: str | None = None) -> int:
        count = 0
        for key, record in list(self._definitions.items()):
            if record.name == name and version in (None, record.version) and not record.deleted:
                self._definitions[key] = replace(record, deleted=True)
                count += 1
        return count

    # -------------------------------------------------------------- executions

    async def load(self, execution_id: str) -> tuple[int, bytes] | None:
        row = self._executions.get(execution_id)
        return None if row is None else (row.record.version, row.record.state)

    async def load_many(self, execution_ids: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        found: dict[str, tuple[int, bytes]] = {}
        for execution_id in execution_ids:
            row = self._executions.get(execution_id)
            if row is not None:
                found[execution_id] = (row.record.version, row.record.state)
        return found

    async def commit(
        self, transitions: Sequence[Transition], done_outbox: Sequence[int] = ()
    ) -> CommitResult:
        result = CommitResult()
        for transition in transitions:
            if transition.execution_id in result.conflicts or not self._check(transition):
                result.conflicts.add(transition.execution_id)
                continue
            self._apply(transition, result)
        for outbox_id in done_outbox:
            self._outbox.pop(outbox_id, None)
        return result

    def _check(self, t: Transition) -> bool:
        row = self._executions.get(t.execution_id)
        current = 0 if row is None else row.record.version
        if current != t.expected_version:
            return False
        return not (
            t.expected_version == 0
            and t.idempotency_key is not None
            and (t.workflow, t.idempotency_key) in self._idempotency
        )

    def _apply(self, t: Transition, result: CommitResult) -> None:
        row = self._executions.get(t.execution_id)
        record = ExecutionRecord(
            id=t.execution_id,
            workflow=t.workflow,
            workflow_version=t.workflow_version,
            status=t.status,
            parent_id=t.parent_id,
            created_at=t.created_at if row is None else row.record.created_at,
            updated_at=t.updated_at,
            version=t.expected_version + 1,
            state=t.state,
        )
        if row is None:
            self._executions[t.execution_id] = _Row(next(self._seq), record)
            self._order.append(t.execution_id)
        else:
            row.record = record
        for key in t.timers_deleted:
            self._timers.pop((t.execution_id, key), None)
        for key, due in t.timers_set:
            self._timers[(t.execution_id, key)] = due
        for queue, body in t.outbox:
            message = OutboxMessage(next(self._ids), queue, body)
            self._outbox[message.id] = message
            result.outbox.append(message)
        for function, state in t.breakers:
            self._breakers[function] = state
        if t.idempotency_key is not None and t.expected_version == 0:
            self._idempotency[(t.workflow, t.idempotency_key)] = t.execution_id
        if t.events is not None:
            version = t.expected_version + 1
            event = EventRecord(version, t.execution_id, t.updated_at, t.events)
            self._events.setdefault(t.execution_id, []).append(event)
        for delivery in t.deliveries:
            self._deliveries.setdefault(delivery.id, delivery)

    async def list_executions(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        parent_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> ExecutionPage:
        end = len(self._order) if cursor is None else int(cursor) - 1
        items: list[ExecutionRecord] = []
        for index in range(end - 1, -1, -1):
            record = self._executions[self._order[index]].record
            if (
                (workflow is None or record.workflow == workflow)
                and (status is None or record.status == status)
                and (parent_id is None or record.parent_id == parent_id)
            ):
                items.append(record)
                if len(items) > limit:
                    break
        if len(items) <= limit:
            return ExecutionPage(items, None)
        del items[limit:]
        return ExecutionPage(items, str(self._executions[items[-1].id].seq))

    async def non_terminal_executions(self) -> list[str]:
        return [
            execution_id
            for execution_id in self._order
            if self._executions[execution_id].record.status not in TERMINAL_STATUSES
        ]

    async def find_idempotent(self, workflow: str, key: str) -> str | None:
        return self._idempotency.get((workflow, key))

    # -------------------------------------------------------------- timers, outbox, breakers

    async def due_timers(self, now: float, limit: int) -> list[TimerRecord]:
        timers = sorted(
            (TimerRecord(e, k, due) for (e, k), due in self._timers.items() if due <= now),
            key=lambda t: t.due,
        )
        return timers[:limit]

    async def all_timers(self) -> list[TimerRecord]:
        return sorted(
            (TimerRecord(e, k, due) for (e, k), due in self._timers.items()), key=lambda t: t.due
        )

    async def pending_outbox(self, limit: int) -> list[OutboxMessage]:
        ids = sorted(self._outbox)[:limit]
        return [self._outbox[i] for i in ids]

    async def delete_outbox(self, ids: Sequence[int]) -> None:
        for outbox_id in ids:
            self._outbox.pop(outbox_id, None)

    async def load_breakers(self) -> dict[str, bytes]:
        return dict(self._breakers)

    async def read_events(
        self, execution_id: str, after: int = 0, limit: int = 100
    ) -> list[EventRecord]:
        events = self._events.get(execution_id, [])
        start = bisect.bisect_right([e.version for e in events], after)
        return events[start : start + limit]

    # -------------------------------------------------------------- API keys

    async def save_api_key(self, record: ApiKeyRecord) -> None:
        if record.id in self._api_keys or any(
            k.key_hash == record.key_hash for k in self._api_keys.values()
        ):
            raise ConflictError(f"API key {record.id} is already stored")
        self._api_keys[record.id] = record

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        for record in self._api_keys.values():
            if record.key_hash == key_hash:
                return record
        return None

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        return sorted(self._api_keys.values(), key=lambda k: k.created_at)

    async def revoke_api_key(self, key_id: str, at: float) -> bool:
        record = self._api_keys.get(key_id)
        if record is None or record.revoked:
            return False
        self._api_keys[key_id] = replace(record, revoked_at=at)
        return True

    # -------------------------------------------------------------- webhooks

    async def save_webhook(self, record: WebhookRecord) -> None:
        if record.id in self._webhooks:
            raise ConflictError(f"webhook {record.id} is already stored")
        self._webhooks[record.id] = record

    async def list_webhooks(self) -> list[WebhookRecord]:
        return sorted(self._webhooks.values(), key=lambda w: w.created_at)

    async def delete_webhook(self, webhook_id: str) -> bool:
        return self._webhooks.pop(webhook_id, None) is not None

    def _due(self, record: DeliveryRecord) -> float | None:
        if record.status != "pending" or record.next_attempt is None:
            return None
        return self._claims.get(record.id, record.next_attempt)

    async def claim_due_deliveries(
        self, now: float, limit: int, lease_seconds: float
    ) -> list[DeliveryRecord]:
        due = [
            (at, d)
            for d in self._deliveries.values()
            if (at := self._due(d)) is not None and at <= now
        ]
        claimed = [d for _, d in sorted(due, key=lambda pair: pair[0])[:limit]]
        for record in claimed:
            self._claims[record.id] = now + lease_seconds
        return claimed

    async def record_delivery_attempts(self, records: Sequence[DeliveryRecord]) -> None:
        for record in records:
            self._deliveries[record.id] = record
            self._claims.pop(record.id, None)

    async def list_deliveries(self, webhook_id: str, limit: int = 100) -> list[DeliveryRecord]:
        mine = [d for d in self._deliveries.values() if d.webhook_id == webhook_id]
        return sorted(reversed(mine), key=lambda d: -d.created_at)[:limit]

    # -------------------------------------------------------------- leases

    async def renew_leases(self, owner: str, partitions: int, ttl: float) -> dict[int, int]:
        now = time.time()
        self._instances[owner] = now
        live = sum(1 for seen in self._instances.values() if seen >= now - ttl)
        fair = fair_share(partitions, live)
        leases = self._leases
        mine = [p for p in range(partitions) if leases.get(p, (None, 0, 0.0))[0] == owner]
        for partition in mine[fair:]:
            leases[partition] = (None, leases[partition][1], 0.0)
        mine = mine[:fair]
        for partition in range(partitions):
            if len(mine) >= fair:
                break
            holder, epoch, until = leases.get(partition, (None, 0, 0.0))
            if holder != owner and (holder is None or until < now):
                leases[partition] = (owner, epoch + 1, 0.0)
                mine.append(partition)
        for partition in mine:
            leases[partition] = (owner, leases[partition][1], now + ttl)
        return {partition: leases[partition][1] for partition in sorted(mine)}

    async def release_leases(self, owner: str) -> None:
        self._instances.pop(owner, None)
        for partition, (holder, epoch, _) in list(self._leases.items()):
            if holder == owner:
                self._leases[partition] = (None, epoch, 0.0)

    # -------------------------------------------------------------- event streams

    async def save_event_stream(self, record: EventStreamRecord) -> None:
        if record.id in self._streams:
            raise ConflictError(f"event stream {record.id} is already stored")
        self._streams[record.id] = record

    async def list_event_streams(self) -> list[EventStreamRecord]:
        return sorted(self._streams.values(), key=lambda s: s.created_at)

    async def delete_event_stream(self, stream_id: str) -> bool:
        return self._streams.pop(stream_id, None) is not None

    # -------------------------------------------------------------- triggers

    async def save_trigger(self, record: TriggerRecord) -> None:
        if record.id in self._triggers:
            raise ConflictError(f"trigger {record.id} is already stored")
        self._triggers[record.id] = record

    async def list_triggers(self, workflow: str | None = None) -> list[TriggerRecord]:
        found = [t for t in self._triggers.values() if workflow in (None, t.workflow)]
        return sorted(found, key=lambda t: t.created_at)

    async def delete_trigger(self, trigger_id: str) -> bool:
        return self._triggers.pop(trigger_id, None) is not None

    # -------------------------------------------------------------- schedules

    async def save_schedule(self, record: ScheduleRecord) -> None:
        if record.id in self._schedules:
            raise ConflictError(f"schedule {record.id} is already stored")
        self._schedules[record.id] = record

    async def list_schedules(self, workflow: str | None = None) -> list[ScheduleRecord]:
        found = [s for s in self._schedules.values() if workflow in (None, s.workflow)]
        return sorted(found, key=lambda s: s.created_at)

    async def delete_schedule(self, schedule_id: str) -> bool:
        return self._schedules.pop(schedule_id, None) is not None

    async def advance_schedule(self, schedule_id: str, expected: float, next_run: float) -> bool:
        record = self._schedules.get(schedule_id)
        if record is None or record.next_run != expected:
            return False
        self._schedules[schedule_id] = replace(record, next_run=next_run)
        return True

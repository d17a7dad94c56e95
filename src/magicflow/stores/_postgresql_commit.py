"""The PostgreSQL group commit: a batch of transitions in one transaction, four round trips
whatever its size (BEGIN, lock and read, write, COMMIT).

1. ``SELECT ... FOR UPDATE`` locks the rows of every execution the batch touches (in id
   order: no deadlocks between instances) and reads their versions; the checks, and the
   chaining of several transitions of one execution, happen here against rows nobody else can
   change until we commit. Idempotency keys the batch wants are looked up too.
2. ONE statement writes everything: data-modifying CTEs, a table each, fed by ``unnest``
   arrays (asyncpg prepares it once per connection). Each row is touched once: an execution
   is written as its last applied transition, a timer as the last thing the batch did to it,
   a breaker last-wins.
3. Creates and idempotency keys are inserted with ``ON CONFLICT DO NOTHING``: a row another
   instance created meanwhile (it could not be locked: it did not exist yet) comes back
   missing. Then the whole transaction (the rest of that statement included) is rolled back
   and run again with those executions as conflicts; that only happens when two instances
   race on the same new id or key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from magicflow.stores._hooks import delivery_due, encode
from magicflow.stores.base import CommitResult, DeliveryRecord, OutboxMessage, Transition

_LOCK_VERSIONS = "SELECT id, version FROM executions WHERE id = ANY($1::text[]) FOR UPDATE"
_IDEMPOTENT = (
    "SELECT i.workflow, i.key FROM idempotency i "
    "JOIN unnest($1::text[], $2::text[]) AS u(workflow, key) "
    "ON i.workflow = u.workflow AND i.key = u.key"
)
_DEADLOCK_RETRIES = 5
_DELETE_OUTBOX = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"
_WRITE = """
WITH created AS (
    INSERT INTO executions (id, version, workflow, workflow_version, status, parent_id,
                            created_at, updated_at, state)
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::float8[], $8::float8[], $9::bytea[])
    ON CONFLICT (id) DO NOTHING RETURNING id
), updated AS (
    UPDATE executions e SET version = u.version, status = u.status,
                            updated_at = u.updated_at, state = u.state
    FROM unnest($10::text[], $11::bigint[], $12::text[], $13::float8[], $14::bytea[])
         AS u(id, version, status, updated_at, state)
    WHERE e.id = u.id
), keys AS (
    INSERT INTO idempotency (workflow, key, execution_id)
    SELECT * FROM unnest($15::text[], $16::text[], $17::text[])
    ON CONFLICT DO NOTHING RETURNING execution_id
), timers_deleted AS (
    DELETE FROM timers t USING unnest($18::text[], $19::text[]) AS u(execution_id, key)
    WHERE t.execution_id = u.execution_id AND t.key = u.key
), timers_set AS (
    INSERT INTO timers (execution_id, key, due)
    SELECT * FROM unnest($20::text[], $21::text[], $22::float8[])
    ON CONFLICT (execution_id, key) DO UPDATE SET due = excluded.due
), outbox AS (
    INSERT INTO outbox (queue, body)
    SELECT queue, body FROM unnest($23::text[], $24::bytea[]) WITH ORDINALITY
         AS u(queue, body, n) ORDER BY n
    RETURNING id
), outbox_done AS (
    DELETE FROM outbox WHERE id = ANY($25::bigint[])
), breakers AS (
    INSERT INTO breakers (function, state) SELECT * FROM unnest($26::text[], $27::bytea[])
    ON CONFLICT (function) DO UPDATE SET state = excluded.state
), events AS (
    INSERT INTO events (execution_id, version, at, body)
    SELECT * FROM unnest($28::text[], $29::bigint[], $30::float8[], $31::bytea[])
    ON CONFLICT DO NOTHING  -- only a raced create collides, and its transaction is undone
), deliveries AS (
    INSERT INTO deliveries (id, webhook_id, created_at, due, data)
    SELECT * FROM unnest($32::text[], $33::text[], $34::float8[], $35::float8[], $36::bytea[])
    ON CONFLICT DO NOTHING
)
SELECT (SELECT coalesce(array_agg(id), '{}') FROM created),
       (SELECT coalesce(array_agg(execution_id), '{}') FROM keys),
       (SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM outbox)
"""


class _Raced(Exception):  # internal: rolls the transaction back, then it is retried
    def __init__(self, lost: set[str]) -> None:
        self.lost = lost


class _Plan:
    """What the applied transitions of a batch write, collapsed per row."""

    def __init__(self) -> None:
        self.conflicts: set[str] = set()
        self.created: dict[str, Transition] = {}  # the first transition: creates the row
        self.final: dict[str, tuple[int, Transition]] = {}  # the last one: its version, state
        self.timers: dict[tuple[str, str], float | None] = {}  # None: deleted
        self.outbox: list[tuple[str, bytes]] = []
        self.breakers: dict[str, bytes] = {}
        self.idempotency: dict[tuple[str, str], str] = {}
        self.events: list[tuple[str, int, float, bytes]] = []
        self.deliveries: list[DeliveryRecord] = []

    def add(self, t: Transition, version: int) -> None:
        eid = t.execution_id
        if t.expected_version == 0:
            self.created[eid] = t
            if t.idempotency_key is not None:
                self.idempotency[(t.workflow, t.idempotency_key)] = eid
        self.final[eid] = (version, t)
        for key in t.timers_deleted:
            self.timers[(eid, key)] = None
        for key, due in t.timers_set:
            self.timers[(eid, key)] = due
        self.outbox.extend(t.outbox)
        self.breakers.update(t.breakers)
        if t.events is not None:
            self.events.append((eid, version, t.updated_at, t.events))
        self.deliveries.extend(t.deliveries)

    def arguments(self, done_outbox: Sequence[int]) -> list[Any]:
        """The 36 arrays of ``_WRITE``."""
        # rows in key order, so that two instances writing the same rows (racing creates,
        # shared breakers) wait for each other instead of deadlocking
        creates = [(self.created[eid], *self.final[eid]) for eid in sorted(self.created)]
        updates = [(v, t) for eid, (v, t) in self.final.items() if eid not in self.created]
        deleted = sorted(key for key, due in self.timers.items() if due is None)
        moved = sorted((key, due) for key, due in self.timers.items() if due is not None)
        keys = sorted(self.idempotency.items())
        breakers = sorted(self.breakers.items())
        events = list(zip(*sorted(self.events), strict=True)) or [(), (), (), ()]
        return [
            [first.execution_id for first, _, _ in creates],
            [version for _, version, _ in creates],
            [first.workflow for first, _, _ in creates],
            [first.workflow_version for first, _, _ in creates],
            [last.status for _, _, last in creates],
            [first.parent_id for first, _, _ in creates],
            [first.created_at for first, _, _ in creates],
            [last.updated_at for _, _, last in creates],
            [last.state for _, _, last in creates],
            [t.execution_id for _, t in updates],
            [version for version, _ in updates],
            [t.status for _, t in updates],
            [t.updated_at for _, t in updates],
            [t.state for _, t in updates],
            [workflow for (workflow, _), _ in keys],
            [key for (_, key), _ in keys],
            [eid for _, eid in keys],
            [eid for eid, _ in deleted],
            [key for _, key in deleted],
            [eid for (eid, _), _ in moved],
            [key for (_, key), _ in moved],
            [due for _, due in moved],
            [queue for queue, _ in self.outbox],
            [body for _, body in self.outbox],
            list(done_outbox),
            [function for function, _ in breakers],
            [state for _, state in breakers],
            *(list(column) for column in events),
            [d.id for d in self.deliveries],
            [d.webhook_id for d in self.deliveries],
            [d.created_at for d in self.deliveries],
            [delivery_due(d) for d in self.deliveries],
            [encode(d) for d in self.deliveries],
        ]


def _plan(
    transitions: Sequence[Transition],
    versions: dict[str, int],
    taken_keys: set[tuple[str, str]],
    forced: set[str],
) -> _Plan:
    plan = _Plan()
    current = dict(versions)
    for t in transitions:
        eid = t.execution_id
        if eid in plan.conflicts or eid in forced or current.get(eid, 0) != t.expected_version:
            plan.conflicts.add(eid)
            continue
        if t.expected_version == 0 and t.idempotency_key is not None:
            key = (t.workflow, t.idempotency_key)
            if key in taken_keys or key in plan.idempotency:
                plan.conflicts.add(eid)
                continue
        current[eid] = t.expected_version + 1
        plan.add(t, t.expected_version + 1)
    return plan


async def commit(
    conn: asyncpg.Connection, transitions: Sequence[Transition], done_outbox: Sequence[int]
) -> CommitResult:
    if not transitions:
        await conn.execute(_DELETE_OUTBOX, list(done_outbox))
        return CommitResult()
    forced: set[str] = set()  # each race adds to it: the loop ends
    deadlocks = 0
    while True:
        try:
            async with conn.transaction():
                return await _commit(conn, transitions, done_outbox, forced)
        except _Raced as raced:  # another instance created these meanwhile: they conflict
            forced |= raced.lost
        except asyncpg.DeadlockDetectedError:  # rows are written in order: rare, but retry
            deadlocks += 1
            if deadlocks == _DEADLOCK_RETRIES:
                raise


async def _commit(
    conn: asyncpg.Connection,
    transitions: Sequence[Transition],
    done_outbox: Sequence[int],
    forced: set[str],
) -> CommitResult:
    ids = sorted({t.execution_id for t in transitions})
    versions = {row[0]: row[1] for row in await conn.fetch(_LOCK_VERSIONS, ids)}
    wanted = [
        (t.workflow, t.idempotency_key)
        for t in transitions
        if t.expected_version == 0 and t.idempotency_key is not None
    ]
    taken: set[tuple[str, str]] = set()
    if wanted:
        rows = await conn.fetch(_IDEMPOTENT, [w for w, _ in wanted], [k for _, k in wanted])
        taken = {(row[0], row[1]) for row in rows}
    plan = _plan(transitions, versions, taken, forced)
    created, keyed, outbox_ids = await conn.fetchrow(_WRITE, *plan.arguments(done_outbox))
    lost = (set(plan.created) - set(created)) | (set(plan.idempotency.values()) - set(keyed))
    if lost:
        raise _Raced(lost)
    outbox = [
        OutboxMessage(i, queue, body)
        for i, (queue, body) in zip(outbox_ids, plan.outbox, strict=True)
    ]
    return CommitResult(conflicts=plan.conflicts, outbox=outbox)

"""The PostgreSQL group commit: a batch of transitions in one transaction.

1. ``SELECT ... FOR UPDATE`` locks the rows of every execution the batch touches and reads
   their versions; the checks (and the chaining of several transitions of one execution)
   happen here, against rows nobody else can change until we commit.
2. Creates and idempotency keys are inserted with ``ON CONFLICT DO NOTHING``: a row another
   instance created meanwhile (it could not be locked, it did not exist yet) comes back
   missing. Then the batch is checked again with those executions as conflicts, after rolling
   back to a savepoint. That only happens when two instances race on the same new id.
3. Everything else is written table by table as ``unnest`` arrays: one statement per table
   whatever the batch size, so a commit costs about ten round trips.

Each execution is written once per batch (its last applied transition), timers once per key
(the last thing the batch did to it), breakers once per function (last wins).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from magicflow.stores.base import CommitResult, OutboxMessage, Transition

if TYPE_CHECKING:
    import asyncpg  # type: ignore[import-untyped]

_LOCK_VERSIONS = "SELECT id, version FROM executions WHERE id = ANY($1::text[]) FOR UPDATE"
_IDEMPOTENT = (
    "SELECT i.workflow, i.key FROM idempotency i "
    "JOIN unnest($1::text[], $2::text[]) AS u(workflow, key) "
    "ON i.workflow = u.workflow AND i.key = u.key"
)
_INSERT_EXECUTIONS = (
    "INSERT INTO executions (id, version, workflow, workflow_version, status, parent_id, "
    "created_at, updated_at, state) "
    "SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], "
    "$6::text[], $7::float8[], $8::float8[], $9::bytea[]) "
    "ON CONFLICT (id) DO NOTHING RETURNING id"
)
_UPDATE_EXECUTIONS = (
    "UPDATE executions e SET version = u.version, status = u.status, "
    "updated_at = u.updated_at, state = u.state "
    "FROM unnest($1::text[], $2::bigint[], $3::text[], $4::float8[], $5::bytea[]) "
    "AS u(id, version, status, updated_at, state) WHERE e.id = u.id"
)
_INSERT_IDEMPOTENCY = (
    "INSERT INTO idempotency (workflow, key, execution_id) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) "
    "ON CONFLICT DO NOTHING RETURNING execution_id"
)
_DELETE_TIMERS = (
    "DELETE FROM timers t USING unnest($1::text[], $2::text[]) AS u(execution_id, key) "
    "WHERE t.execution_id = u.execution_id AND t.key = u.key"
)
_UPSERT_TIMERS = (
    "INSERT INTO timers (execution_id, key, due) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::float8[]) "
    "ON CONFLICT (execution_id, key) DO UPDATE SET due = excluded.due"
)
_OUTBOX_IDS = "SELECT nextval(pg_get_serial_sequence('outbox', 'id')) FROM generate_series(1, $1)"
_INSERT_OUTBOX = (
    "INSERT INTO outbox (id, queue, body) OVERRIDING SYSTEM VALUE "
    "SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[])"
)
_DELETE_OUTBOX = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"
_UPSERT_BREAKERS = (
    "INSERT INTO breakers (function, state) SELECT * FROM unnest($1::text[], $2::bytea[]) "
    "ON CONFLICT (function) DO UPDATE SET state = excluded.state"
)
_INSERT_EVENTS = (
    "INSERT INTO events (execution_id, version, at, body) "
    "SELECT * FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::bytea[])"
)


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
    """Runs inside the caller's transaction."""
    result = CommitResult()
    plan = _Plan()
    if transitions:
        plan = await _check_and_create(conn, transitions)
        await _write(conn, plan, result)
    if done_outbox:
        await conn.execute(_DELETE_OUTBOX, list(done_outbox))
    result.conflicts = plan.conflicts
    return result


async def _check_and_create(conn: asyncpg.Connection, transitions: Sequence[Transition]) -> _Plan:
    ids = sorted({t.execution_id for t in transitions})  # lock in one order: no deadlocks
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
    forced: set[str] = set()
    while True:
        plan = _plan(transitions, versions, taken, forced)
        if not plan.created:
            return plan
        savepoint = conn.transaction()
        await savepoint.start()
        lost = await _create(conn, plan)
        if not lost:
            await savepoint.commit()
            return plan
        await savepoint.rollback()  # another instance created these meanwhile
        forced |= lost


async def _create(conn: asyncpg.Connection, plan: _Plan) -> set[str]:
    """Insert the new rows; the ids of the creates that lost a race."""
    rows = [(t, plan.final[eid][0], plan.final[eid][1]) for eid, t in plan.created.items()]
    inserted = await conn.fetch(
        _INSERT_EXECUTIONS,
        [first.execution_id for first, _, _ in rows],
        [version for _, version, _ in rows],
        [first.workflow for first, _, _ in rows],
        [first.workflow_version for first, _, _ in rows],
        [last.status for _, _, last in rows],
        [first.parent_id for first, _, _ in rows],
        [first.created_at for first, _, _ in rows],
        [last.updated_at for _, _, last in rows],
        [last.state for _, _, last in rows],
    )
    lost = set(plan.created) - {row[0] for row in inserted}
    if plan.idempotency and not lost:
        keys = list(plan.idempotency.items())
        recorded = await conn.fetch(
            _INSERT_IDEMPOTENCY,
            [workflow for (workflow, _), _ in keys],
            [key for (_, key), _ in keys],
            [eid for _, eid in keys],
        )
        lost = set(plan.idempotency.values()) - {row[0] for row in recorded}
    return lost


async def _write(conn: asyncpg.Connection, plan: _Plan, result: CommitResult) -> None:
    updates = [(eid, v, t) for eid, (v, t) in plan.final.items() if eid not in plan.created]
    if updates:
        await conn.execute(
            _UPDATE_EXECUTIONS,
            [eid for eid, _, _ in updates],
            [version for _, version, _ in updates],
            [t.status for _, _, t in updates],
            [t.updated_at for _, _, t in updates],
            [t.state for _, _, t in updates],
        )
    await _write_timers(conn, plan)
    if plan.outbox:
        rows = await conn.fetch(_OUTBOX_IDS, len(plan.outbox))
        ids = sorted(row[0] for row in rows)
        await conn.execute(
            _INSERT_OUTBOX, ids, [q for q, _ in plan.outbox], [b for _, b in plan.outbox]
        )
        result.outbox = [
            OutboxMessage(i, queue, body) for i, (queue, body) in zip(ids, plan.outbox, strict=True)
        ]
    if plan.breakers:
        await conn.execute(_UPSERT_BREAKERS, list(plan.breakers), list(plan.breakers.values()))
    if plan.events:
        await conn.execute(
            _INSERT_EVENTS, *(list(column) for column in zip(*plan.events, strict=True))
        )


async def _write_timers(conn: asyncpg.Connection, plan: _Plan) -> None:
    deleted = [key for key, due in plan.timers.items() if due is None]
    moved = [(key, due) for key, due in plan.timers.items() if due is not None]
    if deleted:
        await conn.execute(_DELETE_TIMERS, [e for e, _ in deleted], [k for _, k in deleted])
    if moved:
        await conn.execute(
            _UPSERT_TIMERS,
            [e for (e, _), _ in moved],
            [k for (_, k), _ in moved],
            [due for _, due in moved],
        )

"""The Store Protocol: the few atomic primitives every state store backend provides.

Features (the driver, timers, the outbox relay, idempotent starts, the HTTP API) are built
above these primitives; a backend only stores bytes and the small records defined here.

Semantics every backend keeps (``tests/contract/test_store_contract.py`` checks them):

- ``commit`` is a *group* commit: every transition of the batch goes in one database
  transaction. Each carries an expected version (0: the execution must not exist yet); a
  transition whose check fails is not applied at all (neither its state nor its timers,
  outbox messages, breakers, idempotency key, events or deliveries) and is reported in
  ``CommitResult.conflicts``; the others commit. A create whose idempotency key is already
  taken for its workflow is a conflict too. Transitions of the same execution in one batch
  are applied in order, each checked against the version the previous one left.
- The version of an execution counts its applied transitions: 1 after the create.
- States are opaque bytes; the store never interprets them. It indexes only the columns a
  transition carries (workflow, version, status, parent, times).
- Outbox messages get increasing integer ids at commit; they stay until ``delete_outbox`` (or
  the ``done_outbox`` of a later commit) removes them: a crash between commit and publish
  re-publishes them (at least once).
- Timers are ``(execution_id, key) -> due``; setting an existing key moves it. A transition
  deletes the timer it handled, so a timer fires into exactly one applied transition.
- Definitions are immutable per (name, version): saving the same content again is a no-op
  (and undeletes it), other content is a ``ConflictError``. "Latest" is the highest version
  in natural order (``version_key``) among those not deleted. Deleted definitions stay
  readable by exact version (``include_deleted``) so that running executions can finish.
- API keys are stored by the sha256 of the key (never the key); ids and hashes are unique
  (saving either again is a ``ConflictError``). Revoking keeps the record (``revoked_at``).
- Webhook subscriptions, event streams, triggers and schedules are saved once per id (again:
  ``ConflictError``). Deliveries (of webhooks and event streams alike) are keyed by their id:
  committing an id already stored is ignored (the id is what receivers deduplicate on).
  ``claim_due_deliveries`` takes the pending ones whose next attempt has come, atomically:
  each is leased to the caller for ``lease_seconds`` (its due time moves to the end of the
  lease, the record itself is unchanged), so callers racing over one store, in any number of
  processes, never take the same delivery twice; a delivery whose taker died comes due again
  when its lease ends. ``record_delivery_attempts`` replaces stored deliveries (and ends
  their leases).
  ``advance_schedule`` moves a schedule's next run only from the value the caller read (a
  compare-and-set, so two service instances advance a tick once).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "timed_out"})
LIVE_STATUSES = frozenset({"pending", "running", "paused"})


class TimerRecord(NamedTuple):
    execution_id: str
    key: str
    due: float  # epoch seconds


class OutboxMessage(NamedTuple):
    id: int
    queue: str
    body: bytes


class EventRecord(NamedTuple):
    """The lifecycle events one transition emitted (``body``: a JSON list, for watchers),
    keyed by the version the transition gave the execution."""

    version: int
    execution_id: str
    at: float
    body: bytes


@dataclass(frozen=True, slots=True)
class DefinitionRecord:
    """One version of a workflow definition. ``document`` is the definition as JSON."""

    name: str
    version: str
    digest: str  # identity of the content (sha256 of the canonical document)
    document: bytes
    created_at: float
    source: str | None = None  # the YAML it was compiled from, when known
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """An execution as listed: its indexed columns and its (opaque) state."""

    id: str
    workflow: str
    workflow_version: str
    status: str
    parent_id: str | None
    created_at: float
    updated_at: float
    version: int
    state: bytes


@dataclass(frozen=True, slots=True)
class ExecutionPage:
    items: list[ExecutionRecord]
    next_cursor: str | None  # pass back as ``cursor`` for the next (older) page


@dataclass(slots=True)
class Transition:
    """Everything one execution's step forward writes, applied atomically or not at all."""

    execution_id: str
    expected_version: int  # 0: create
    state: bytes
    workflow: str
    workflow_version: str
    status: str
    parent_id: str | None
    created_at: float
    updated_at: float
    timers_set: Sequence[tuple[str, float]] = ()  # (key, due)
    timers_deleted: Sequence[str] = ()
    outbox: Sequence[tuple[str, bytes]] = ()  # (queue, body)
    breakers: Sequence[tuple[str, bytes]] = ()  # (function, state)
    idempotency_key: str | None = None  # recorded for (workflow, key) on create
    events: bytes | None = None  # lifecycle events, appended for watchers
    deliveries: Sequence[DeliveryRecord] = ()  # of the events, to subscriptions (new ids only)


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key of the HTTP service: its id, the sha256 (hex) of the key, never the key."""

    id: str
    key_hash: str
    role: str  # admin | operator | viewer
    created_at: float
    revoked_at: float | None = None
    name: str | None = None  # a label for people

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class WebhookRecord:
    """A subscription: POST the lifecycle events ``events`` (kinds, or ``"*"``) of the
    executions of ``workflow`` (every workflow when None) to ``url``, signed with ``secret``."""

    id: str
    url: str
    secret: str
    events: tuple[str, ...]
    created_at: float
    workflow: str | None = None


@dataclass(frozen=True, slots=True)
class EventStreamRecord:
    """A subscription: publish the lifecycle events ``events`` (kinds, or ``"*"``) of the
    executions of ``workflow`` (every workflow when None) to ``queue`` on ``broker`` (a broker
    URL; the service's own broker when None)."""

    id: str
    queue: str
    events: tuple[str, ...]
    created_at: float
    workflow: str | None = None
    broker: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One event for one subscription (a webhook or an event stream, ``webhook_id`` names
    either): its ``body`` and where its delivery stands. The id stays the same across
    attempts (receivers deduplicate on it)."""

    id: str
    webhook_id: str
    event: str
    body: bytes
    created_at: float
    status: str = "pending"  # pending | delivered | failed
    attempts: int = 0
    next_attempt: float | None = None  # epoch seconds, while pending
    last_status: int | None = None  # the receiver's last HTTP status
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """A cron schedule of a workflow; ``next_run`` is the next tick to fire (epoch seconds)."""

    id: str
    workflow: str
    cron: str
    next_run: float
    created_at: float
    input: bytes = b"{}"  # JSON
    version: str | None = None
    missed: str = "skip"  # skip | run_once
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class TriggerRecord:
    """Start an execution of ``workflow`` for each message on ``queue`` of ``broker`` (a
    broker URL; the service's own broker when None). ``idempotency_key`` and ``input`` say
    which part of the message they are: ``"key"`` (the broker's message key), ``"message"``
    (the whole JSON message) or ``"message.a.b"`` (a field of it)."""

    id: str
    workflow: str
    queue: str
    idempotency_key: str
    created_at: float
    input: str = "message"
    broker: str | None = None
    version: str | None = None


@dataclass(slots=True)
class CommitResult:
    conflicts: set[str] = field(default_factory=set)  # execution ids not applied
    outbox: list[OutboxMessage] = field(default_factory=list)  # written, in transition order


@runtime_checkable
class Store(Protocol):
    async def open(self) -> None:
        """Connect, and create or migrate the tables on first use."""
        ...

    async def close(self) -> None: ...

    # -------------------------------------------------------------- definitions

    async def save_definition(self, record: DefinitionRecord) -> bool:
        """True: created; False: identical content already stored. ConflictError otherwise."""
        ...

    async def get_definition(
        self, name: str, version: str | None = None, *, include_deleted: bool = False
    ) -> DefinitionRecord | None:
        """That version, or the latest one when ``version`` is None."""
        ...

    async def list_definitions(
        self, name: str | None = None, *, include_deleted: bool = False
    ) -> list[DefinitionRecord]:
        """Ordered by name, then version (``version_key``)."""
        ...

    async def delete_definition(self, name: str, version: str | None = None) -> int:
        """Soft delete one version (or every version); how many were deleted."""
        ...

    # -------------------------------------------------------------- executions

    async def load(self, execution_id: str) -> tuple[int, bytes] | None:
        """``(version, state)``, or None for an unknown execution."""
        ...

    async def load_many(self, execution_ids: Sequence[str]) -> dict[str, tuple[int, bytes]]: ...

    async def commit(
        self, transitions: Sequence[Transition], done_outbox: Sequence[int] = ()
    ) -> CommitResult:
        """Apply ``transitions`` (and delete the ``done_outbox`` ids) in one transaction."""
        ...

    async def list_executions(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        parent_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> ExecutionPage:
        """Newest first."""
        ...

    async def non_terminal_executions(self) -> list[str]:
        """Ids of executions whose status is not terminal, oldest first."""
        ...

    async def find_idempotent(self, workflow: str, key: str) -> str | None:
        """The execution started for ``(workflow, key)``, if any."""
        ...

    # -------------------------------------------------------------- timers, outbox, breakers

    async def due_timers(self, now: float, limit: int) -> list[TimerRecord]:
        """Timers due at ``now`` or before, earliest first."""
        ...

    async def all_timers(self) -> list[TimerRecord]:
        """Every timer, earliest first (a driver reloads them on start)."""
        ...

    async def pending_outbox(self, limit: int) -> list[OutboxMessage]:
        """Messages not yet deleted, oldest first."""
        ...

    async def delete_outbox(self, ids: Sequence[int]) -> None: ...

    async def load_breakers(self) -> dict[str, bytes]: ...

    async def read_events(
        self, execution_id: str, after: int = 0, limit: int = 100
    ) -> list[EventRecord]:
        """Event records of an execution with ``version > after``, oldest first."""
        ...

    # -------------------------------------------------------------- API keys

    async def save_api_key(self, record: ApiKeyRecord) -> None:
        """Store a new key; ConflictError if its id or hash is stored already."""
        ...

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        """The key with that hash (revoked ones too: the caller refuses them)."""
        ...

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """Every key, revoked ones included, oldest first."""
        ...

    async def revoke_api_key(self, key_id: str, at: float) -> bool:
        """Mark the key revoked at ``at``; False if there is no such key or it was revoked."""
        ...

    # -------------------------------------------------------------- webhooks

    async def save_webhook(self, record: WebhookRecord) -> None:
        """Store a new subscription; ConflictError if its id is stored already."""
        ...

    async def list_webhooks(self) -> list[WebhookRecord]:
        """Every subscription, oldest first."""
        ...

    async def delete_webhook(self, webhook_id: str) -> bool:
        """False if there is no such subscription (its deliveries stay readable)."""
        ...

    async def claim_due_deliveries(
        self, now: float, limit: int, lease_seconds: float
    ) -> list[DeliveryRecord]:
        """Take the pending deliveries due at ``now`` or before (at most ``limit``, earliest
        first, those due at once in the order they were stored): each is due again only at
        ``now + lease_seconds`` unless an attempt is recorded first. No two claims ever
        return the same delivery within its lease."""
        ...

    async def record_delivery_attempts(self, records: Sequence[DeliveryRecord]) -> None:
        """Replace the stored deliveries of those ids (status, attempts, next attempt, last
        response), ending their leases."""
        ...

    async def list_deliveries(self, webhook_id: str, limit: int = 100) -> list[DeliveryRecord]:
        """The deliveries of a subscription, newest first."""
        ...

    # -------------------------------------------------------------- event streams

    async def save_event_stream(self, record: EventStreamRecord) -> None:
        """Store a new event stream; ConflictError if its id is stored already."""
        ...

    async def list_event_streams(self) -> list[EventStreamRecord]:
        """Every event stream, oldest first."""
        ...

    async def delete_event_stream(self, stream_id: str) -> bool:
        """False if there is no such event stream (its deliveries stay readable)."""
        ...

    # -------------------------------------------------------------- triggers

    async def save_trigger(self, record: TriggerRecord) -> None:
        """Store a new trigger; ConflictError if its id is stored already."""
        ...

    async def list_triggers(self, workflow: str | None = None) -> list[TriggerRecord]:
        """Triggers (of ``workflow``, or all), oldest first."""
        ...

    async def delete_trigger(self, trigger_id: str) -> bool:
        """False if there is no such trigger."""
        ...

    # -------------------------------------------------------------- schedules

    async def save_schedule(self, record: ScheduleRecord) -> None:
        """Store a new schedule; ConflictError if its id is stored already."""
        ...

    async def list_schedules(self, workflow: str | None = None) -> list[ScheduleRecord]:
        """Schedules (of ``workflow``, or all), oldest first."""
        ...

    async def delete_schedule(self, schedule_id: str) -> bool:
        """False if there is no such schedule."""
        ...

    async def advance_schedule(self, schedule_id: str, expected: float, next_run: float) -> bool:
        """Set the next run to ``next_run`` if it is ``expected`` now; False otherwise."""
        ...


@runtime_checkable
class Leases(Protocol):
    """Partition leases, for several service instances over one store (PostgreSQL).

    Each instance (``owner``) calls ``renew_leases`` every few seconds: that is its heartbeat,
    keeps the partitions it holds for ``ttl`` seconds more, and moves it toward a fair share
    (``ceil(partitions / live instances)``): it takes free or expired partitions when it has
    too few (``FOR UPDATE SKIP LOCKED``: two instances never take the same one), and gives
    back its highest ones when it has too many. Time is the store's clock, so the instances'
    clocks don't matter. A partition taken over gets a new ``epoch``.
    """

    async def renew_leases(self, owner: str, partitions: int, ttl: float) -> dict[int, int]:
        """Heartbeat and rebalance; the partitions ``owner`` holds now, with their epochs."""
        ...

    async def release_leases(self, owner: str) -> None:
        """Give back every partition (a clean shutdown hands over at once)."""
        ...


def fair_share(partitions: int, live_instances: int) -> int:
    """How many partitions each instance should hold."""
    return -(-partitions // max(live_instances, 1))


_RELEASE = re.compile(r"v?(\d+(?:\.\d+)*)(.*)", re.IGNORECASE)
_PART = re.compile(r"(\d+)|([^\d.+\-_]+)")

VersionKey = tuple[tuple[int, ...], int, tuple[tuple[int, int | str], ...]]


def version_key(version: str) -> VersionKey:
    """Natural order of version strings, semver-like: ``1.9.0 < 1.10.0 < 2``,
    ``1.0.0-rc1 < 1.0.0-rc2 < 1.0.0`` (a pre-release sorts before its release)."""
    match = _RELEASE.fullmatch(version.strip())
    numbers: tuple[int, ...] = ()
    rest = version
    if match:
        numbers = tuple(int(n) for n in match.group(1).split("."))
        rest = match.group(2)
    tail = tuple(
        (1, int(number)) if number else (0, word.lower())
        for number, word in _PART.findall(rest.split("+", 1)[0])
    )
    return numbers, (0 if tail else 1), tail


def latest(records: Sequence[DefinitionRecord]) -> DefinitionRecord | None:
    """The record with the highest version (ties: the last one given)."""
    best: DefinitionRecord | None = None
    best_key: VersionKey = ((), 0, ())
    for record in records:
        key = version_key(record.version)
        if best is None or key >= best_key:
            best, best_key = record, key
    return best

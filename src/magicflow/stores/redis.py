"""Redis store (``redis://host:port/db``): state in Redis, for deployments that run Redis only.

Every key is under a prefix (``magicflow:`` unless the URL says ``?prefix=...``), so the store
can share a Redis database with the Redis broker; ``?pool_size=N`` bounds the connections
(default 32; callers wait for a free one). The group commit is one Lua script
(``redis_commit.lua``, which documents the keys): it checks every expected version and applies
the transitions that pass, atomically. Listing walks sorted-set indexes of executions by
creation order (all, per workflow, per status, per parent), with the creation number as cursor.

Durability is Redis's: configure AOF (``appendonly yes``, ``appendfsync everysec`` or
``always``) or a crash of the Redis server loses the last writes. The scripts touch keys they
compute from the prefix, so Redis Cluster is not supported (one primary, replicas for
failover). Several service instances: the commit script is atomic, so a transition is applied
once, but timers and recovery are per instance (see the PostgreSQL store): run one service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from magicflow.errors import ConfigurationError, ConflictError, StoreError
from magicflow.stores._hooks import (
    decode_delivery,
    decode_event_stream,
    decode_schedule,
    decode_trigger,
    decode_webhook,
    delivery_due,
    encode,
)
from magicflow.stores.base import (
    LIVE_STATUSES,
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
    latest,
    version_key,
)

SCHEMA_VERSION = 1  # the key layout; bump it with a migration when the layout changes
_HERE = Path(__file__).parent
_COMMIT = (_HERE / "redis_commit.lua").read_text()
_SAVE_API_KEY = (_HERE / "redis_api_key.lua").read_text()
_ADVANCE_SCHEDULE = (_HERE / "redis_schedule.lua").read_text()
_CLAIM_DELIVERIES = (_HERE / "redis_claim.lua").read_text()
_EXECUTION_FIELDS = (
    "workflow",
    "workflow_version",
    "status",
    "parent_id",
    "created_at",
    "updated_at",
    "version",
    "state",
    "seq",
)
_SCAN = 200  # index entries read per round trip when listing

_encode = msgspec.msgpack.Encoder().encode
_Definition = tuple[str, bytes, float, str | None]  # digest, document, created_at, source
_decode_definition = msgspec.msgpack.Decoder(_Definition).decode
_ApiKey = tuple[str, str, float, str | None]  # key_hash, role, created_at, name
_decode_api_key = msgspec.msgpack.Decoder(_ApiKey).decode


class _Record(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> float: ...


R = TypeVar("R", bound=_Record)


def parse_url(url: str) -> tuple[str, str, int]:
    """``(URL for redis-py, key prefix, pool size)``."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigurationError(f"not a Redis URL: {url!r}")
    options = dict(parse_qsl(parts.query))
    prefix = options.pop("prefix", "magicflow:")
    try:
        pool_size = int(options.pop("pool_size", "32"))
    except ValueError as exc:
        raise ConfigurationError(f"bad pool_size in {url!r}") from exc
    return urlunsplit(parts._replace(query=urlencode(options))), prefix, pool_size


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _append_transition(args: list[Any], t: Transition) -> None:
    args += (
        t.execution_id,
        t.expected_version,
        t.state,
        t.workflow,
        t.workflow_version,
        t.status,
        "0" if t.parent_id is None else "1",
        t.parent_id or "",
        repr(t.created_at),
        repr(t.updated_at),
        "0" if t.idempotency_key is None else "1",
        t.idempotency_key or "",
        "0" if t.events is None else "1",
        t.events or b"",
        len(t.timers_set),
    )
    for key, due in t.timers_set:
        args += (key, repr(due))
    args.append(len(t.timers_deleted))
    args += t.timers_deleted
    args.append(len(t.outbox))
    for queue, body in t.outbox:
        args += (queue, body)
    args.append(len(t.breakers))
    for function, state in t.breakers:
        args += (function, state)
    args.append(len(t.deliveries))
    for d in t.deliveries:
        next_attempt = delivery_due(d)
        args += (d.id, d.webhook_id, repr(d.created_at))
        args += ("" if next_attempt is None else repr(next_attempt), encode(d))


def _timer(member: bytes, due: float) -> TimerRecord:
    execution_id, _, key = member.partition(b"\0")
    return TimerRecord(execution_id.decode(), key.decode(), due)


class RedisStore:
    def __init__(
        self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "magicflow:", pool_size: int = 32
    ) -> None:
        self.url, self.prefix, self.pool_size = url, prefix, pool_size
        self.schema_version = 0
        self._client: aioredis.Redis | None = None
        self._commit: Any = None
        self._save_api_key: Any = None
        self._advance_schedule: Any = None
        self._claim_deliveries: Any = None

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        plain, prefix, pool_size = parse_url(url)
        return cls(plain, prefix, pool_size)

    async def open(self) -> None:
        if self._client is not None:
            return
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=self.pool_size, timeout=30
        )
        client = aioredis.Redis.from_pool(pool)  # owns the pool: closing it closes the pool
        try:
            await client.ping()
            key = self.prefix + "schema_version"
            await client.set(key, SCHEMA_VERSION, nx=True)
            self.schema_version = int(await client.get(key) or 0)
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise StoreError(f"Redis: cannot open {self._where()}: {exc}") from exc
        if self.schema_version > SCHEMA_VERSION:
            await client.aclose()
            raise StoreError(
                f"the Redis store at {self._where()} has key layout {self.schema_version}, "
                f"newer than this version of Magic Flow knows ({SCHEMA_VERSION})"
            )
        self._client = client
        self._commit = client.register_script(_COMMIT)
        self._save_api_key = client.register_script(_SAVE_API_KEY)
        self._advance_schedule = client.register_script(_ADVANCE_SCHEDULE)
        self._claim_deliveries = client.register_script(_CLAIM_DELIVERIES)

    def _where(self) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @asynccontextmanager
    async def _redis(self) -> AsyncIterator[Any]:
        """The client; driver errors become StoreError. (Typed ``Any``: redis-py annotates its
        commands for its sync and async clients at once, ``Awaitable[T] | T``.)"""
        if self._client is None:
            raise StoreError("the Redis store is not open")
        try:
            yield self._client
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis: {exc}") from exc

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # -------------------------------------------------------------- definitions

    async def save_definition(self, record: DefinitionRecord) -> bool:
        packed = _encode((record.digest, record.document, record.created_at, record.source))
        versions, deleted = self._key("def", record.name), self._key("defdel", record.name)
        async with self._redis() as r:
            if await r.hsetnx(versions, record.version, packed):
                await (
                    r.pipeline()
                    .sadd(self._key("defnames"), record.name)
                    .srem(deleted, record.version)
                    .execute()
                )
                return True
            stored = await r.hget(versions, record.version)
            if stored is not None and _decode_definition(stored)[0] == record.digest:
                await r.srem(deleted, record.version)
                return False
        raise ConflictError(
            f"workflow {record.name}@{record.version} is already registered with different content"
        )

    async def _definitions(self, name: str) -> list[DefinitionRecord]:
        async with self._redis() as r:
            versions, deleted = await (
                r.pipeline()
                .hgetall(self._key("def", name))
                .smembers(self._key("defdel", name))
                .execute()
            )
        gone = {_text(v) for v in deleted}
        records = []
        for version, packed in versions.items():
            digest, document, created_at, source = _decode_definition(packed)
            version = _text(version)
            records.append(
                DefinitionRecord(
                    name, version, digest, document, created_at, source, version in gone
                )
            )
        return records

    async def get_definition(
        self, name: str, version: str | None = None, *, include_deleted: bool = False
    ) -> DefinitionRecord | None:
        records = [
            r
            for r in await self._definitions(name)
            if (include_deleted and version is not None) or not r.deleted
        ]
        if version is None:
            return latest(records)
        return next((r for r in records if r.version == version), None)

    async def list_definitions(
        self, name: str | None = None, *, include_deleted: bool = False
    ) -> list[DefinitionRecord]:
        if name is None:
            async with self._redis() as r:
                names = sorted(_text(n) for n in await r.smembers(self._key("defnames")))
        else:
            names = [name]
        records = [
            record
            for each in names
            for record in await self._definitions(each)
            if include_deleted or not record.deleted
        ]
        records.sort(key=lambda r: (r.name, version_key(r.version)))
        return records

    async def delete_definition(self, name: str, version: str | None = None) -> int:
        async with self._redis() as r:
            stored = [_text(v) for v in await r.hkeys(self._key("def", name))]
            targets = [v for v in stored if version in (None, v)]
            if not targets:
                return 0
            return int(await r.sadd(self._key("defdel", name), *targets))

    # -------------------------------------------------------------- executions

    async def load(self, execution_id: str) -> tuple[int, bytes] | None:
        found = await self.load_many([execution_id])
        return found.get(execution_id)

    async def load_many(self, execution_ids: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        if not execution_ids:
            return {}
        async with self._redis() as r:
            pipe = r.pipeline(transaction=False)
            for execution_id in execution_ids:
                pipe.hmget(self._key("exec", execution_id), "version", "state")
            rows = await pipe.execute()
        return {
            execution_id: (int(version), state)
            for execution_id, (version, state) in zip(execution_ids, rows, strict=True)
            if version is not None
        }

    async def commit(
        self, transitions: Sequence[Transition], done_outbox: Sequence[int] = ()
    ) -> CommitResult:
        if not transitions and not done_outbox:
            return CommitResult()
        args: list[Any] = [self.prefix, len(transitions)]
        for transition in transitions:
            _append_transition(args, transition)
        args.append(len(done_outbox))
        args += done_outbox
        async with self._redis():
            conflicts, ids, applied = await self._commit(keys=[], args=args)
        result = CommitResult(conflicts={_text(c) for c in conflicts})
        messages = (message for i in applied for message in transitions[i - 1].outbox)
        result.outbox = [
            OutboxMessage(int(i), queue, body)
            for i, (queue, body) in zip(ids, messages, strict=True)
        ]
        return result

    async def list_executions(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        parent_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> ExecutionPage:
        if parent_id is not None:
            index = self._key("idx", "parent", parent_id)
        elif status is not None:
            index = self._key("idx", "status", status)
        elif workflow is not None:
            index = self._key("idx", "workflow", workflow)
        else:
            index = self._key("idx", "all")
        top: str = "+inf" if cursor is None else f"({int(cursor)}"
        items: list[tuple[int, ExecutionRecord]] = []
        async with self._redis() as r:
            while len(items) <= limit:
                ids = await r.zrevrangebyscore(index, top, "-inf", start=0, num=_SCAN)
                for seq, record in await self._records(r, [_text(i) for i in ids]):
                    top = f"({seq}"
                    if (workflow is None or record.workflow == workflow) and (
                        status is None or record.status == status
                    ):
                        items.append((seq, record))
                if len(ids) < _SCAN:
                    break
        next_cursor = str(items[limit - 1][0]) if len(items) > limit else None
        return ExecutionPage([record for _, record in items[:limit]], next_cursor)

    async def _records(self, r: Any, ids: list[str]) -> list[tuple[int, ExecutionRecord]]:
        pipe = r.pipeline(transaction=False)
        for execution_id in ids:
            pipe.hmget(self._key("exec", execution_id), *_EXECUTION_FIELDS)
        records = []
        for execution_id, row in zip(ids, await pipe.execute(), strict=True):
            workflow, wf_version, status, parent, created, updated, version, state, seq = row
            record = ExecutionRecord(
                execution_id,
                _text(workflow),
                _text(wf_version),
                _text(status),
                None if parent is None else _text(parent),
                float(created),
                float(updated),
                int(version),
                state,
            )
            records.append((int(seq), record))
        return records

    async def non_terminal_executions(self) -> list[str]:
        keys = [self._key("idx", "status", status) for status in sorted(LIVE_STATUSES)]
        async with self._redis() as r:
            return [_text(i) for i in await r.zunion(keys)]

    async def find_idempotent(self, workflow: str, key: str) -> str | None:
        async with self._redis() as r:
            found = await r.hget(self._key("idempotency"), f"{workflow}\0{key}")
        return None if found is None else _text(found)

    # -------------------------------------------------------------- timers, outbox, breakers

    async def due_timers(self, now: float, limit: int) -> list[TimerRecord]:
        async with self._redis() as r:
            rows = await r.zrangebyscore(
                self._key("timers"), "-inf", repr(now), start=0, num=limit, withscores=True
            )
        return [_timer(member, due) for member, due in rows]

    async def all_timers(self) -> list[TimerRecord]:
        async with self._redis() as r:
            rows = await r.zrange(self._key("timers"), 0, -1, withscores=True)
        return [_timer(member, due) for member, due in rows]

    async def pending_outbox(self, limit: int) -> list[OutboxMessage]:
        if limit <= 0:
            return []
        async with self._redis() as r:
            ids = [int(i) for i in await r.zrange(self._key("outbox"), 0, limit - 1)]
            if not ids:
                return []
            rows = await r.hmget(self._key("outbox", "messages"), ids)
        messages = []
        for outbox_id, row in zip(ids, rows, strict=True):
            if row is not None:  # deleted between the two reads
                queue, _, body = row.partition(b"\0")
                messages.append(OutboxMessage(outbox_id, queue.decode(), body))
        return messages

    async def delete_outbox(self, ids: Sequence[int]) -> None:
        if ids:
            await self.commit((), ids)

    async def load_breakers(self) -> dict[str, bytes]:
        async with self._redis() as r:
            rows = await r.hgetall(self._key("breakers"))
        return {_text(name): state for name, state in rows.items()}

    async def read_events(
        self, execution_id: str, after: int = 0, limit: int = 100
    ) -> list[EventRecord]:
        async with self._redis() as r:
            rows = await r.zrangebyscore(
                self._key("events", execution_id), f"({after}", "+inf", start=0, num=limit
            )
        events = []
        for row in rows:
            version, at, body = row.split(b"|", 2)
            events.append(EventRecord(int(version), execution_id, float(at), body))
        return events

    # -------------------------------------------------------------- API keys

    async def save_api_key(self, record: ApiKeyRecord) -> None:
        packed = _encode((record.key_hash, record.role, record.created_at, record.name))
        keys = [
            self._key("api_keys"),
            self._key("api_keys", "by_hash"),
            self._key("api_keys", "order"),
        ]
        async with self._redis() as r:
            saved = await self._save_api_key(keys=keys, args=[record.id, record.key_hash, packed])
            if record.revoked_at is not None and saved:
                await r.hset(self._key("api_keys", "revoked"), record.id, repr(record.revoked_at))
        if not saved:
            raise ConflictError(f"API key {record.id} is already stored")

    async def _api_keys(self, r: Any, ids: list[str]) -> list[ApiKeyRecord]:
        if not ids:
            return []
        packed, revoked = await (
            r.pipeline()
            .hmget(self._key("api_keys"), ids)
            .hmget(self._key("api_keys", "revoked"), ids)
            .execute()
        )
        records = []
        for key_id, row, at in zip(ids, packed, revoked, strict=True):
            key_hash, role, created_at, name = _decode_api_key(row)
            revoked_at = None if at is None else float(at)
            records.append(ApiKeyRecord(key_id, key_hash, role, created_at, revoked_at, name))
        return records

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        async with self._redis() as r:
            key_id = await r.hget(self._key("api_keys", "by_hash"), key_hash)
            found = [] if key_id is None else await self._api_keys(r, [_text(key_id)])
        return found[0] if found else None

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        async with self._redis() as r:
            ids = [_text(i) for i in await r.lrange(self._key("api_keys", "order"), 0, -1)]
            records = await self._api_keys(r, ids)
        return sorted(records, key=lambda k: k.created_at)

    async def revoke_api_key(self, key_id: str, at: float) -> bool:
        async with self._redis() as r:
            if not await r.hexists(self._key("api_keys"), key_id):
                return False
            return bool(await r.hsetnx(self._key("api_keys", "revoked"), key_id, repr(at)))

    # -------------------------------------------------------------- webhooks

    async def _hsave(self, what: str, key: str, record: Any) -> None:
        """Store a record in the hash ``key`` under its id, once."""
        async with self._redis() as r:
            saved = await r.hsetnx(self._key(key), record.id, encode(record))
        if not saved:
            raise ConflictError(f"{what} {record.id} is already stored")

    async def _hlist(self, key: str, decode: Callable[[bytes], R]) -> list[R]:
        """The records of the hash ``key``, oldest first."""
        async with self._redis() as r:
            rows = await r.hvals(self._key(key))
        return sorted((decode(row) for row in rows), key=lambda w: (w.created_at, w.id))

    async def _hdel(self, key: str, record_id: str) -> bool:
        async with self._redis() as r:
            return bool(await r.hdel(self._key(key), record_id))

    async def save_webhook(self, record: WebhookRecord) -> None:
        await self._hsave("webhook", "webhooks", record)

    async def list_webhooks(self) -> list[WebhookRecord]:
        return await self._hlist("webhooks", decode_webhook)

    async def delete_webhook(self, webhook_id: str) -> bool:
        return await self._hdel("webhooks", webhook_id)

    async def _deliveries(self, r: Any, ids: list[bytes]) -> list[DeliveryRecord]:
        if not ids:
            return []
        rows = await r.hmget(self._key("deliveries"), ids)
        return [decode_delivery(row) for row in rows if row is not None]

    async def claim_due_deliveries(
        self, now: float, limit: int, lease_seconds: float
    ) -> list[DeliveryRecord]:
        keys = [self._key("deliveries"), self._key("deliveries", "due")]
        args = [repr(now), limit, repr(now + lease_seconds)]
        async with self._redis():
            rows = await self._claim_deliveries(keys=keys, args=args)
        return [decode_delivery(row) for row in rows if row is not None]

    async def record_delivery_attempts(self, records: Sequence[DeliveryRecord]) -> None:
        if not records:
            return
        due = self._key("deliveries", "due")
        async with self._redis() as r:
            pipe = r.pipeline(transaction=True)
            for record in records:
                pipe.hset(self._key("deliveries"), record.id, encode(record))
                if record.status == "pending" and record.next_attempt is not None:
                    pipe.zadd(due, {record.id: record.next_attempt})
                else:
                    pipe.zrem(due, record.id)
            await pipe.execute()

    async def list_deliveries(self, webhook_id: str, limit: int = 100) -> list[DeliveryRecord]:
        async with self._redis() as r:
            ids = await r.zrevrange(self._key("deliveries", "of", webhook_id), 0, limit - 1)
            return await self._deliveries(r, ids)

    # -------------------------------------------------------------- event streams

    async def save_event_stream(self, record: EventStreamRecord) -> None:
        await self._hsave("event stream", "event_streams", record)

    async def list_event_streams(self) -> list[EventStreamRecord]:
        return await self._hlist("event_streams", decode_event_stream)

    async def delete_event_stream(self, stream_id: str) -> bool:
        return await self._hdel("event_streams", stream_id)

    # -------------------------------------------------------------- triggers

    async def save_trigger(self, record: TriggerRecord) -> None:
        await self._hsave("trigger", "triggers", record)

    async def list_triggers(self, workflow: str | None = None) -> list[TriggerRecord]:
        records = await self._hlist("triggers", decode_trigger)
        return [t for t in records if workflow in (None, t.workflow)]

    async def delete_trigger(self, trigger_id: str) -> bool:
        return await self._hdel("triggers", trigger_id)

    # -------------------------------------------------------------- schedules

    async def save_schedule(self, record: ScheduleRecord) -> None:
        async with self._redis() as r:
            saved = await r.hsetnx(self._key("schedules"), record.id, encode(record))
            if saved:
                await r.hset(self._key("schedules", "next"), record.id, repr(record.next_run))
        if not saved:
            raise ConflictError(f"schedule {record.id} is already stored")

    async def list_schedules(self, workflow: str | None = None) -> list[ScheduleRecord]:
        async with self._redis() as r:
            rows, runs = await (
                r.pipeline()
                .hgetall(self._key("schedules"))
                .hgetall(self._key("schedules", "next"))
                .execute()
            )
        found = []
        for key, row in rows.items():
            record = decode_schedule(row)
            if workflow in (None, record.workflow):
                next_run = runs.get(key)
                if next_run is not None:
                    record = replace(record, next_run=float(next_run))
                found.append(record)
        return sorted(found, key=lambda s: (s.created_at, s.id))

    async def delete_schedule(self, schedule_id: str) -> bool:
        async with self._redis() as r:
            deleted, _ = await (
                r.pipeline(transaction=True)
                .hdel(self._key("schedules"), schedule_id)
                .hdel(self._key("schedules", "next"), schedule_id)
                .execute()
            )
        return bool(deleted)

    async def advance_schedule(self, schedule_id: str, expected: float, next_run: float) -> bool:
        keys = [self._key("schedules", "next")]
        async with self._redis():
            moved = await self._advance_schedule(
                keys=keys, args=[schedule_id, repr(expected), repr(next_run)]
            )
        return bool(moved)

"""Kafka broker (``kafka://HOST:PORT[,HOST:PORT]``), with aiokafka: Apache Kafka, Redpanda, Tansu.

Each queue is a topic ``magicflow.q.QUEUE`` (created on first use with ``partitions``
partitions) read by one consumer group ``magicflow.QUEUE``; every broker object is a member of
that group, so consumers compete by partition. Messages whose body names an ``execution_id``
are keyed by it (one execution's tasks stay in one partition, in order); the others of one
``publish`` call go together to one partition. The producer is idempotent (``acks=all``);
``publish`` returns once every message is acknowledged.

Kafka has offsets, not per-message acknowledgements, so this module keeps them per partition:

- **In-flight tracking.** Every record handed out stays *held* until it is settled (``ack``,
  ``nack``, ``dead_letter``); the group's committed offset only moves to the first offset not
  yet settled, so a crash delivers again exactly what was not finished (and what follows it).
- **Delivery counts survive a crash.** The commit's metadata lists the held offsets with the
  times they were delivered and the settled ones above the committed offset; the next owner of
  the partition reads it, counts on from there and skips what was already settled.
- **Visibility timeout, in process.** A held record not settled or extended within
  ``visibility_timeout`` is handed out again by the next ``receive`` of the same broker object
  with ``delivery_count + 1``; ``extend`` pushes that time; ``nack(requeue=True, delay=D)`` makes
  it due again after D seconds (``requeue=False`` settles it).
- **Across processes, rebalances.** When a member dies (no heartbeat for ``session_timeout``)
  or leaves, its partitions go to the others, who start from the committed offset. When a
  rebalance takes partitions away from a live member, it first waits (at most
  ``rebalance_timeout``) until the records it holds from them are settled or expired, so a
  step that is still running (heartbeating) is not handed to a second executor meanwhile.
- ``dead_letter`` appends to ``magicflow.dead.QUEUE`` (one partition, the reason in header
  ``magicflow-reason``, the delivery count in ``magicflow-deliveries``), then settles.

Options in the URL's query: ``visibility_timeout`` (seconds, default 30), ``partitions`` (of
a queue's topic when this broker creates it, default 16), ``replication_factor`` (of the
topics it creates, default 1: raise it on a cluster, or create the topics beforehand),
``session_timeout`` (seconds, default 10), ``rebalance_timeout`` (seconds, default 60).
aiokafka reconnects by itself after a server restart; an operation during an outage raises
``BrokerError``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn
from urllib.parse import parse_qs, urlsplit

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
)
from aiokafka.structs import ConsumerRecord, TopicPartition

from magicflow.brokers.base import Delivery
from magicflow.errors import BrokerError, ConfigurationError

logger = logging.getLogger(__name__)

REASON_HEADER: Final = "magicflow-reason"
COUNT_HEADER: Final = "magicflow-deliveries"
DEFAULT_PORT: Final = 9092
MAX_METADATA: Final = 3000  # Kafka refuses commit metadata over offset.metadata.max.bytes (4 KiB)
MAX_IDLE_WAIT: Final = 0.5  # a waiting receive looks at held records at least this often
TOPIC_EXISTS: Final = 36
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

_OPTIONS: Final = {
    "visibility_timeout": 30.0,
    "partitions": 16,
    "replication_factor": 1,
    "session_timeout": 10.0,
    "rebalance_timeout": 60.0,
}


@dataclass(frozen=True, slots=True)
class _Settings:
    servers: list[str]
    visibility_timeout: float
    partitions: int
    replication_factor: int
    session_timeout: float
    rebalance_timeout: float


def _settings(url: str) -> _Settings:
    parts = urlsplit(url)
    servers = [
        server if ":" in server else f"{server}:{DEFAULT_PORT}"
        for server in parts.netloc.split(",")
        if server
    ]
    if not servers:
        raise ConfigurationError(f"kafka broker: no server in {url!r} (kafka://HOST:PORT)")
    values = parse_qs(parts.query)
    unknown = sorted(set(values) - set(_OPTIONS))
    if unknown:
        raise ConfigurationError(f"kafka broker: unknown URL option {unknown[0]!r}")
    got: dict[str, Any] = {}
    for name, default in _OPTIONS.items():
        raw = values.get(name, [str(default)])[-1]
        try:
            got[name] = type(default)(raw)
        except ValueError:
            kind = "a number" if isinstance(default, float) else "an integer"
            raise ConfigurationError(f"kafka broker: {name} must be {kind}") from None
    for name in _OPTIONS:
        if got[name] <= 0:
            raise ConfigurationError(f"kafka broker: {name} must be positive")
    return _Settings(servers=servers, **got)


def _fail(exc: BaseException) -> NoReturn:
    raise BrokerError(f"kafka broker: {type(exc).__name__}: {exc}") from exc


@asynccontextmanager
async def _errors() -> AsyncIterator[None]:
    """Driver errors become ``BrokerError`` here, at the edge."""
    try:
        yield
    except (KafkaError, OSError) as exc:
        _fail(exc)


class _Keyed(msgspec.Struct):
    execution_id: str | None = None


_KEYS = msgspec.json.Decoder(_Keyed)


def _key(body: bytes) -> bytes | None:
    """The execution id of a task or result message, as the record's key (None: not one)."""
    if not body.startswith(b"{"):
        return None
    try:
        execution_id = _KEYS.decode(body).execution_id
    except msgspec.MsgspecError:
        return None
    return execution_id.encode() if execution_id else None


# ---------------------------------------------------------------------- in-flight tracking


@dataclass(slots=True, eq=False)
class _Held:
    """A record handed out and not settled yet."""

    partition: _Partition
    offset: int
    value: bytes
    count: int
    visible_at: float  # monotonic time after which it is handed out again
    key: bytes | None = None  # the record's key


@dataclass(slots=True, eq=False)
class _Partition:
    """One assigned partition: what is held, what was settled above the committed offset."""

    tp: TopicPartition
    prior: dict[int, int]  # from the last commit's metadata: offset -> deliveries, 0 = settled
    held: dict[int, _Held] = field(default_factory=dict)
    settled: set[int] = field(default_factory=set)
    end: int = -1  # one past the highest offset fetched; -1: nothing fetched yet
    dirty: bool = False

    def position(self) -> int:
        return min(self.held) if self.held else self.end

    def metadata(self) -> str:
        """Runs ``FIRST-LAST=N`` (N deliveries, 0 = settled) of the offsets above the position,
        cut to what Kafka accepts (what is cut is delivered again or counted low: still safe)."""
        position = self.position()
        self.settled = {offset for offset in self.settled if offset >= position}
        states = sorted(
            [(offset, held.count) for offset, held in self.held.items()]
            + [(offset, 0) for offset in self.settled]
        )
        runs: list[str] = []
        size = 0
        i = 0
        while i < len(states):
            first, state = states[i]
            j = i
            while j + 1 < len(states) and states[j + 1] == (states[j][0] + 1, state):
                j += 1
            last = states[j][0]
            run = f"{first}={state}" if first == last else f"{first}-{last}={state}"
            size += len(run) + 1
            if size > MAX_METADATA:
                break
            runs.append(run)
            i = j + 1
        return ",".join(runs)


def _parse_metadata(text: str | None) -> dict[int, int]:
    prior: dict[int, int] = {}
    for run in (text or "").split(","):
        span, _, state = run.partition("=")
        first, _, last = span.partition("-")
        try:
            low, high, count = int(first), int(last or first), int(state)
        except ValueError:
            continue  # not ours (or cut): nothing to learn from it
        for offset in range(low, min(high, low + 100_000) + 1):
            prior[offset] = count
    return prior


class _Queue(ConsumerRebalanceListener):  # type: ignore[misc]
    """One queue's group member: its consumer, its partitions and what it holds from them."""

    def __init__(self, broker: KafkaBroker, queue: str) -> None:
        self.broker = broker
        self.queue = queue
        self.group = f"magicflow.{_UNSAFE.sub('_', queue)}"
        settings = broker.settings
        session_ms = int(settings.session_timeout * 1000)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.servers,
            client_id="magicflow",
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=min(session_ms // 3, 1000),
            rebalance_timeout_ms=int(settings.rebalance_timeout * 1000),
            max_poll_interval_ms=24 * 3600 * 1000,  # an executor busy with long steps stays in
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self.partitions: dict[TopicPartition, _Partition] = {}
        self.assigned = asyncio.Event()
        self.assigned.set()
        self.settled = asyncio.Event()  # something held was settled or extended
        # "steady"; "revoking": the partitions are being given up (what the consumer fetched
        # for them is dropped: their next owner reads it from the commit); "between": given
        # up, the new assignment not yet set up here (what is fetched for it waits for that)
        self.phase = "steady"
        self.closing = False
        self.committer: asyncio.Task[None] | None = None
        self.dirty = False
        # joining the group can take seconds (Tansu waits half the session timeout for others)
        self.consumer.subscribe([broker.topic(queue)], listener=self)
        self.started = asyncio.create_task(self.consumer.start())

    async def ready(self, wait: float) -> bool:
        """Whether the member has joined, waiting at most ``wait`` seconds for it."""
        if not self.started.done():
            await asyncio.wait([self.started], timeout=max(wait, 0.0))
            if not self.started.done():
                return False
        self.started.result()  # a failed start raises here
        return True

    # ------------------------------------------------------------ rebalance listener

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Give the partitions up once what is held from them is settled or expired."""
        self.assigned.clear()
        self.phase = "revoking"
        give_up = time.monotonic() + self.broker.settings.rebalance_timeout * 0.8
        while not self.closing:
            now = time.monotonic()
            busy = [
                h for p in self.partitions.values() for h in p.held.values() if h.visible_at > now
            ]
            if not busy or now >= give_up:
                break
            self.settled.clear()
            wait = min(min(h.visible_at for h in busy), give_up) - now
            with suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.01)):
                    await self.settled.wait()
        with suppress(KafkaError, IllegalStateError):
            await self.commit_now()
        for tp in revoked:
            self.partitions.pop(tp, None)
        self.phase = "between"

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            committed: dict[TopicPartition, Any] = {}
            if assigned:
                try:
                    committed = await self.broker.admin_client().list_consumer_group_offsets(
                        self.group, partitions=list(assigned)
                    )
                except KafkaError as exc:  # counts start again from the records' own
                    logger.warning("kafka broker: reading commit metadata: %s", exc)
            for tp in assigned:
                meta = committed.get(tp)
                self.partitions[tp] = _Partition(tp, _parse_metadata(getattr(meta, "metadata", "")))
        finally:
            self.phase = "steady"
            self.assigned.set()

    # ------------------------------------------------------------ handing out

    def due(self, limit: int, now: float) -> list[Delivery]:
        """Held records whose time is up (expired, or nacked), handed out again."""
        if self.phase != "steady":
            return []
        taken: list[Delivery] = []
        for partition in self.partitions.values():
            for held in partition.held.values():
                if held.visible_at <= now:
                    held.count += 1
                    held.visible_at = now + self.broker.visibility_timeout
                    partition.dirty = True
                    taken.append(Delivery(self.queue, held.value, held.count, held, held.key))
                    if len(taken) >= limit:
                        return taken
        return taken

    def next_due(self) -> float | None:
        times = [h.visible_at for p in self.partitions.values() for h in p.held.values()]
        return min(times) if times else None

    async def track(
        self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]
    ) -> list[Delivery]:
        taken: list[Delivery] = []
        now = time.monotonic()
        if self.phase == "revoking":
            return taken
        for tp, records in batch.items():
            partition = self.partitions.get(tp)
            if partition is None and tp in self.consumer.assignment():
                await self.assigned.wait()  # fetched before the listener finished
                partition = self.partitions.get(tp)
            if partition is None:
                continue  # revoked meanwhile: its next owner reads it from the committed offset
            for record in records:
                partition.end = max(partition.end, record.offset + 1)
                partition.dirty = True
                prior = partition.prior.pop(record.offset, None)
                if prior == 0:  # settled before the last rebalance
                    partition.settled.add(record.offset)
                    continue
                held = _Held(
                    partition,
                    record.offset,
                    record.value or b"",
                    (prior or 0) + 1,
                    now + self.broker.visibility_timeout,
                    record.key,
                )
                partition.held[record.offset] = held
                taken.append(Delivery(self.queue, held.value, held.count, held, held.key))
        return taken

    # ------------------------------------------------------------ settling and committing

    def current(self, held: _Held) -> bool:
        return self.partitions.get(held.partition.tp) is held.partition

    def settle(self, held: _Held) -> None:
        partition = held.partition
        if partition.held.pop(held.offset, None) is not None:
            partition.settled.add(held.offset)
            partition.dirty = True
        self.settled.set()
        self.commit_soon()

    def commit_soon(self) -> None:
        self.dirty = True
        if self.committer is None or self.committer.done():
            self.committer = asyncio.create_task(self._commit_loop())

    async def _commit_loop(self) -> None:
        while self.dirty and not self.closing:
            self.dirty = False
            try:
                await self.commit_now()
            except (CommitFailedError, IllegalStateError) as exc:
                logger.debug("kafka broker: commit during a rebalance: %s", exc)
            except KafkaError as exc:
                logger.warning("kafka broker: commit failed (retried later): %s", exc)
                return

    async def commit_now(self) -> None:
        assigned = self.consumer.assignment()
        offsets: dict[TopicPartition, tuple[int, str]] = {}
        for tp, partition in self.partitions.items():
            if partition.dirty and partition.end >= 0 and tp in assigned:
                partition.dirty = False
                offsets[tp] = (partition.position(), partition.metadata())
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except BaseException:
                for tp in offsets:
                    if tp in self.partitions:
                        self.partitions[tp].dirty = True
                raise

    async def close(self) -> None:
        self.closing = True
        self.settled.set()
        if not self.started.done():
            self.started.cancel()
        with suppress(asyncio.CancelledError, KafkaError):
            await self.started
        if self.committer is not None:
            self.committer.cancel()
            with suppress(asyncio.CancelledError):
                await self.committer
        with suppress(KafkaError, IllegalStateError):
            await self.commit_now()
        await self.consumer.stop()  # the listener commits again and the member leaves


class KafkaBroker:
    def __init__(self, url: str, *, visibility_timeout: float | None = None) -> None:
        self.settings = _settings(url)
        self.visibility_timeout = visibility_timeout or self.settings.visibility_timeout
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._topics: set[str] = set()
        self._queues: dict[str, _Queue] = {}
        self._starting = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        if self._producer is not None:
            return
        async with _errors():
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.settings.servers, client_id="magicflow"
            )
            await admin.start()
            try:
                producer = await self._start_producer()
            except BaseException:
                await admin.close()
                raise
        self._admin, self._producer = admin, producer

    async def _start_producer(self) -> AIOKafkaProducer:
        """An idempotent producer, or a plain ``acks=all`` one when the server cannot give out
        producer ids (Tansu's in-memory storage, for one)."""
        try:
            return await self._producer_started(idempotent=True)
        except KafkaConnectionError:
            raise
        except KafkaError as exc:
            logger.warning("kafka broker: no idempotent producer (%s); using acks=all", exc)
        return await self._producer_started(idempotent=False)

    async def _producer_started(self, *, idempotent: bool) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.servers,
            client_id="magicflow",
            acks="all",
            enable_idempotence=idempotent,
            linger_ms=2,
            max_request_size=4 * 1024 * 1024,
            request_timeout_ms=15_000,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def close(self) -> None:
        queues, self._queues = list(self._queues.values()), {}
        for queue in queues:
            try:
                await queue.close()
            except KafkaError as exc:
                logger.warning("kafka broker: closing %s: %s", queue.queue, exc)
        producer, self._producer = self._producer, None
        admin, self._admin = self._admin, None
        self._topics.clear()
        if producer is not None:
            with suppress(KafkaError):
                await producer.stop()
        if admin is not None:
            with suppress(KafkaError):
                await admin.close()

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise BrokerError("kafka broker: not connected (call connect() first)")
        return self._producer

    def admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            raise BrokerError("kafka broker: not connected (call connect() first)")
        return self._admin

    # ------------------------------------------------------------------ naming

    @staticmethod
    def topic(queue: str) -> str:
        return f"magicflow.q.{_UNSAFE.sub('_', queue)}"

    @staticmethod
    def dead_topic(queue: str) -> str:
        return f"magicflow.dead.{_UNSAFE.sub('_', queue)}"

    async def _ensure_topics(self, queue: str) -> None:
        """Create the queue's topics unless they exist. CreateTopics is sent only for a topic
        the server does not list: on Tansu, creating a topic that exists while another client
        writes to it can lose the record being written."""
        topic = self.topic(queue)
        if topic in self._topics:
            return
        admin = self.admin_client()
        if {topic, self.dead_topic(queue)} <= set(await admin.list_topics()):
            self._topics.add(topic)
            return
        settings = self.settings
        response = await admin.create_topics(
            [
                NewTopic(topic, settings.partitions, settings.replication_factor),
                NewTopic(self.dead_topic(queue), 1, settings.replication_factor),
            ]
        )
        for name, code, *rest in response.topic_errors:
            if code not in (0, TOPIC_EXISTS):
                message = rest[0] if rest and rest[0] else f"error code {code}"
                raise BrokerError(f"kafka broker: cannot create topic {name}: {message}")
        self._topics.add(topic)

    async def _queue(self, queue: str) -> _Queue:
        member = self._queues.get(queue)
        if member is not None:
            return member
        async with self._starting:
            member = self._queues.get(queue)
            if member is None:
                await self._ensure_topics(queue)
                member = self._queues[queue] = _Queue(self, queue)
        return member

    # ------------------------------------------------------------------ the protocol

    async def publish(self, queue: str, bodies: Sequence[bytes]) -> None:
        if not bodies:
            return
        topic = self.topic(queue)
        async with _errors():
            await self._ensure_topics(queue)
            keys = [_key(body) for body in bodies]
            unkeyed = None
            if None in keys:  # unkeyed messages of one call share a partition: they keep order
                partitions = sorted(await self.producer.partitions_for(topic))
                unkeyed = random.choice(partitions)
            sent = []
            for body, key in zip(bodies, keys, strict=True):
                partition = None if key is not None else unkeyed
                sent.append(await self.producer.send(topic, body, key=key, partition=partition))
            await asyncio.gather(*sent)

    async def receive(self, queue: str, max_messages: int, wait: float) -> list[Delivery]:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait
        async with _errors():
            member = await self._queue(queue)
            try:
                if not await member.ready(give_up - loop.time()):
                    return []
            except KafkaError:
                self._queues.pop(queue, None)
                await member.close()
                raise
            while True:
                now = time.monotonic()
                taken = member.due(max_messages, now)
                remaining = give_up - loop.time()
                if len(taken) < max_messages:
                    timeout = 0.0
                    if not taken and remaining > 0:
                        timeout = min(remaining, MAX_IDLE_WAIT)
                        next_due = member.next_due()
                        if next_due is not None:
                            timeout = max(0.0, min(timeout, next_due - now))
                    batch = await member.consumer.getmany(
                        timeout_ms=int(timeout * 1000), max_records=max_messages - len(taken)
                    )
                    taken += await member.track(batch)
                if taken:
                    member.commit_soon()  # the delivery counts, for the next owner
                    return taken
                if loop.time() >= give_up:
                    return []

    def _held(self, deliveries: Sequence[Delivery]) -> list[tuple[_Queue, _Held]]:
        """The deliveries still held by this broker (one given up in a rebalance is not)."""
        found: list[tuple[_Queue, _Held]] = []
        for delivery in deliveries:
            held = delivery.receipt
            if not isinstance(held, _Held):
                raise BrokerError(f"kafka broker: not a delivery of this broker: {delivery!r}")
            member = self._queues.get(delivery.queue)
            if member is not None and member.current(held):
                found.append((member, held))
        return found

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        for member, held in self._held(deliveries):
            member.settle(held)

    async def nack(
        self, deliveries: Sequence[Delivery], *, requeue: bool = True, delay: float = 0.0
    ) -> None:
        if not requeue:
            await self.ack(deliveries)
            return
        visible_at = time.monotonic() + max(delay, 0.0)
        for member, held in self._held(deliveries):
            held.visible_at = visible_at
            member.settled.set()

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        visible_at = time.monotonic() + seconds
        for member, held in self._held(deliveries):
            held.visible_at = max(held.visible_at, visible_at)
            member.settled.set()

    async def dead_letter(self, deliveries: Sequence[Delivery], reason: str) -> None:
        if not deliveries:
            return
        held = self._held(deliveries)
        async with _errors():
            sent = []
            for delivery in deliveries:
                await self._ensure_topics(delivery.queue)
                headers = [
                    (REASON_HEADER, reason.encode()),
                    (COUNT_HEADER, str(delivery.delivery_count).encode()),
                ]
                sent.append(
                    await self.producer.send(
                        self.dead_topic(delivery.queue),
                        delivery.body,
                        key=_key(delivery.body) if delivery.key is None else delivery.key,
                        headers=headers,
                    )
                )
            await asyncio.gather(*sent)
        for member, record in held:
            member.settle(record)

    async def dead_letters(self, queue: str, limit: int = 100) -> list[tuple[bytes, str]]:
        found: list[tuple[bytes, str]] = []
        tp = TopicPartition(self.dead_topic(queue), 0)
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.settings.servers,
            client_id="magicflow",
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        async with _errors():
            await self._ensure_topics(queue)
            await reader.start()
            try:
                reader.assign([tp])
                await reader.seek_to_beginning(tp)
                end = (await reader.end_offsets([tp]))[tp]
                while len(found) < limit and await reader.position(tp) < end:
                    batch = await reader.getmany(
                        tp, timeout_ms=1000, max_records=limit - len(found)
                    )
                    for record in batch.get(tp, []):
                        reason = dict(record.headers or ()).get(REASON_HEADER, b"")
                        found.append((record.value or b"", reason.decode("utf-8", "replace")))
            finally:
                await reader.stop()
        return found[:limit]

    async def stop_receiving(self, queue: str) -> None:
        """Leave ``queue``'s consumer group: its partitions go to the other members, with what
        this client took from them and did not settle (a service instance that gave up a
        partition of executions hands its results queue over this way). A later ``receive``
        joins again."""
        member = self._queues.pop(queue, None)
        if member is not None:
            async with _errors():
                await member.close()

    # ------------------------------------------------------------------ operators and tests

    async def delete_queue(self, queue: str) -> None:
        """Remove the queue's topics (the group's committed offsets stay with the server)."""
        member = self._queues.pop(queue, None)
        async with _errors():
            if member is not None:
                await member.close()
            await self.admin_client().delete_topics([self.topic(queue), self.dead_topic(queue)])
        self._topics.discard(self.topic(queue))

"""Redis Streams broker (``redis://HOST:PORT/DB``).

Each queue is a stream (``magicflow:{QUEUE}:stream``) read by one consumer group
(``magicflow``); every broker object is a consumer of its own in that group, so consumers
compete and each entry goes to one of them.

- ``receive``: ``XREADGROUP ... BLOCK`` (woken by a publish, not polling for new messages).
  Before reading, one Lua script (``redis_receive.lua``) moves due delayed messages back to the
  stream and claims entries idle longer than the visibility timeout (``XAUTOCLAIM``), with
  their delivery count from the pending entries list. The script runs at most every
  ``min(visibility_timeout / 4, 1 s)`` per queue (and when a delayed message of this
  consumer is due), not on every receive: a busy consumer then costs one round trip per
  batch.
- ``ack``: ``XACK`` + ``XDEL``, one transaction per call.
- ``extend``: ``XCLAIM ... IDLE ... JUSTID`` of the entries this consumer still owns
  (``redis_extend.lua``); an extension can't go beyond one visibility timeout from now.
- ``nack(requeue=True)``: the message is added again and the old entry acknowledged, in one
  script (``redis_requeue.lua``); with a delay it waits in a sorted set
  (``magicflow:{QUEUE}:delayed``) until due.
- ``dead_letter``: added to ``magicflow:{QUEUE}:dead`` with the reason, then acknowledged.

Options in the URL's query: ``visibility_timeout`` (seconds, default 30).
Delivery is at least once; redis-py reconnects by itself after a server restart, and an
operation during an outage raises ``BrokerError``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Final, NoReturn, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

from magicflow.brokers.base import Delivery
from magicflow.errors import BrokerError, ConfigurationError

GROUP: Final = "magicflow"
MAX_RECLAIM_INTERVAL: Final = 1.0

_T = TypeVar("_T")


def _script(name: str) -> str:
    return resources.files("magicflow.brokers").joinpath(name).read_text(encoding="utf-8")


def _visibility_timeout(query: str) -> float:
    values = parse_qs(query)
    unknown = sorted(set(values) - {"visibility_timeout"})
    if unknown:
        raise ConfigurationError(f"redis broker: unknown URL option {unknown[0]!r}")
    try:
        seconds = float(values.get("visibility_timeout", ["30"])[-1])
    except ValueError:
        raise ConfigurationError("redis broker: visibility_timeout must be a number") from None
    if seconds <= 0:
        raise ConfigurationError("redis broker: visibility_timeout must be positive")
    return seconds


def _fail(exc: BaseException) -> NoReturn:
    raise BrokerError(f"redis broker: {type(exc).__name__}: {exc}") from exc


class RedisBroker:
    def __init__(self, url: str, *, visibility_timeout: float | None = None) -> None:
        parts = urlsplit(url)
        self.visibility_timeout = visibility_timeout or _visibility_timeout(parts.query)
        self._url = urlunsplit(parts._replace(query=""))
        self._consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._client: aioredis.Redis | None = None
        self._groups: set[str] = set()
        self._cursors: dict[str, bytes] = {}
        self._reclaim_at: dict[str, float] = {}  # queue -> when to run the script next
        self._scripts: dict[str, AsyncScript] = {}

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        if self._client is not None:
            return
        client = aioredis.Redis.from_url(
            self._url,
            socket_connect_timeout=5,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
            health_check_interval=15,
        )
        async with _errors():
            await client.ping()
        self._scripts = {
            name: client.register_script(_script(f"redis_{name}.lua"))
            for name in ("receive", "extend", "requeue")
        }
        self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise BrokerError("redis broker: not connected (call connect() first)")
        return self._client

    # ------------------------------------------------------------------ naming

    @staticmethod
    def _stream(queue: str) -> str:
        return f"magicflow:{{{queue}}}:stream"

    @staticmethod
    def _delayed(queue: str) -> str:
        return f"magicflow:{{{queue}}}:delayed"

    @staticmethod
    def _dead(queue: str) -> str:
        return f"magicflow:{{{queue}}}:dead"

    async def _ensure_group(self, queue: str) -> None:
        if queue in self._groups:
            return
        try:
            await self.client.xgroup_create(self._stream(queue), GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(queue)

    # ------------------------------------------------------------------ publishing

    async def publish(self, queue: str, bodies: Sequence[bytes]) -> None:
        if not bodies:
            return
        stream = self._stream(queue)
        async with _errors(), self.client.pipeline(transaction=False) as pipe:
            for body in bodies:
                pipe.xadd(stream, {"b": body, "n": 0})
            await pipe.execute()

    # ------------------------------------------------------------------ receiving

    async def receive(self, queue: str, max_messages: int, wait: float) -> list[Delivery]:
        return await self.receive_any([queue], max_messages, wait)

    async def receive_any(
        self, queues: Sequence[str], max_messages: int, wait: float
    ) -> list[Delivery]:
        """One ``XREADGROUP`` over every queue's stream (the reclaim script runs per queue
        when that queue's turn has come)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait
        task = asyncio.current_task()
        async with _errors():
            for queue in queues:
                await self._ensure_group(queue)
            while True:
                if task is not None and task.cancelling():
                    # redis-py can swallow a cancellation that lands while it reads a reply;
                    # the messages claimed meanwhile are delivered again after the timeout
                    raise asyncio.CancelledError
                taken: list[Delivery] = []
                for queue in queues:
                    if loop.time() >= self._reclaim_at.get(queue, 0.0):
                        taken += await self._reclaim_now(queue, max_messages - len(taken))
                remaining = give_up - loop.time()
                block: float | None = None
                if not taken and remaining > 0:
                    next_reclaim = min(self._reclaim_at[q] for q in queues) - loop.time()
                    block = max(0.001, min(remaining, next_reclaim))
                need = max_messages - len(taken)
                if need > 0:
                    taken += await self._with_groups(queues, self._read, queues, need, block)
                if taken or remaining <= 0:
                    return taken

    async def _reclaim_now(self, queue: str, count: int) -> list[Delivery]:
        now = asyncio.get_running_loop().time()
        taken, next_due = await self._with_groups([queue], self._reclaim, queue, max(count, 1))
        pause = min(self.visibility_timeout / 4, MAX_RECLAIM_INTERVAL)
        if next_due is not None:
            pause = min(pause, next_due)
        self._reclaim_at[queue] = now + pause
        return taken

    async def _read(self, queues: Sequence[str], count: int, block: float | None) -> list[Delivery]:
        streams = {self._stream(queue): queue for queue in queues}
        reply = await self.client.xreadgroup(
            GROUP,
            self._consumer,
            dict.fromkeys(streams, ">"),
            count=count,
            block=None if block is None else max(1, int(block * 1000)),
        )
        items: Iterable[Any] = reply.items() if isinstance(reply, dict) else reply or []
        taken: list[Delivery] = []
        for stream, entries in items:
            queue = streams[stream.decode() if isinstance(stream, bytes) else stream]
            for entry in (entries[0] if isinstance(reply, dict) else entries) or []:
                entry_id, fields = entry[0], entry[1]
                if not fields:  # deleted meanwhile
                    continue
                prior = int(fields.get(b"n", 0))
                taken.append(Delivery(queue, fields[b"b"], prior + 1, entry_id))
        return taken

    async def _reclaim(self, queue: str, count: int) -> tuple[list[Delivery], float | None]:
        """Move due delayed messages back and claim expired entries; and seconds until the
        next delayed message is due (None: none is waiting)."""
        cursor = self._cursors.get(queue, b"0-0")
        reply = await self._scripts["receive"](
            keys=[self._stream(queue), self._delayed(queue)],
            args=[
                GROUP,
                self._consumer,
                int(self.visibility_timeout * 1000),
                count,
                cursor,
            ],
        )
        self._cursors[queue] = reply[0]
        next_due = None if int(reply[1]) < 0 else int(reply[1]) / 1000
        taken: list[Delivery] = []
        for entry_id, flat, count_so_far in reply[2]:
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            prior = int(fields.get(b"n", 0))
            taken.append(Delivery(queue, fields[b"b"], prior + int(count_so_far), entry_id))
        return taken, next_due

    async def _with_groups(
        self, queues: Sequence[str], call: Callable[..., Awaitable[_T]], *args: Any
    ) -> _T:
        """``call(*args)``; when a stream or group was deleted meanwhile, create them again."""
        try:
            return await call(*args)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        for queue in queues:
            self._groups.discard(queue)
            self._cursors.pop(queue, None)
            await self._ensure_group(queue)
        return await call(*args)

    # ------------------------------------------------------------------ settling

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        async with _errors(), self.client.pipeline(transaction=True) as pipe:
            for queue, ids in _by_queue(deliveries).items():
                pipe.xack(self._stream(queue), GROUP, *ids)
                pipe.xdel(self._stream(queue), *ids)
            await pipe.execute()

    async def nack(
        self, deliveries: Sequence[Delivery], *, requeue: bool = True, delay: float = 0.0
    ) -> None:
        if not requeue:
            await self.ack(deliveries)
            return
        groups: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            groups.setdefault(delivery.queue, []).append(delivery)
        async with _errors():
            for queue, group in groups.items():
                args: list[Any] = [GROUP, max(0, int(delay * 1000))]
                for delivery in group:
                    args += [_receipt(delivery), delivery.delivery_count, delivery.body]
                await self._scripts["requeue"](
                    keys=[self._stream(queue), self._delayed(queue)], args=args
                )
                if delay > 0:  # look for it when it is due
                    due = asyncio.get_running_loop().time() + delay
                    self._reclaim_at[queue] = min(self._reclaim_at.get(queue, due), due)

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        idle = max(0, int((self.visibility_timeout - seconds) * 1000))
        async with _errors():
            for queue, ids in _by_queue(deliveries).items():
                await self._scripts["extend"](
                    keys=[self._stream(queue)], args=[GROUP, self._consumer, idle, *ids]
                )

    async def dead_letter(self, deliveries: Sequence[Delivery], reason: str) -> None:
        if not deliveries:
            return
        async with _errors(), self.client.pipeline(transaction=True) as pipe:
            for delivery in deliveries:
                pipe.xadd(self._dead(delivery.queue), {"b": delivery.body, "reason": reason})
            for queue, ids in _by_queue(deliveries).items():
                pipe.xack(self._stream(queue), GROUP, *ids)
                pipe.xdel(self._stream(queue), *ids)
            await pipe.execute()

    async def dead_letters(self, queue: str, limit: int = 100) -> list[tuple[bytes, str]]:
        async with _errors():
            entries = await self.client.xrange(self._dead(queue), count=limit)
        found: list[tuple[bytes, str]] = []
        for _, fields in entries or []:
            body, reason = (fields or {}).get(b"b", b""), (fields or {}).get(b"reason", b"")
            assert isinstance(body, bytes)
            assert isinstance(reason, bytes)
            found.append((body, reason.decode()))
        return found

    # ------------------------------------------------------------------ operators and tests

    async def delete_queue(self, queue: str) -> None:
        """Remove the queue, its delayed and dead-lettered messages."""
        async with _errors():
            await self.client.delete(self._stream(queue), self._delayed(queue), self._dead(queue))
        self._groups.discard(queue)
        self._cursors.pop(queue, None)


def _receipt(delivery: Delivery) -> bytes:
    if not isinstance(delivery.receipt, bytes):
        raise BrokerError(f"redis broker: not a delivery of this broker: {delivery!r}")
    return delivery.receipt


def _by_queue(deliveries: Sequence[Delivery]) -> dict[str, list[bytes]]:
    groups: dict[str, list[bytes]] = {}
    for delivery in deliveries:
        groups.setdefault(delivery.queue, []).append(_receipt(delivery))
    return groups


@asynccontextmanager
async def _errors() -> AsyncIterator[None]:
    """Driver errors become ``BrokerError`` here, at the edge."""
    try:
        yield
    except (RedisError, OSError) as exc:
        _fail(exc)

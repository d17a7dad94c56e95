"""In-process broker (``memory://``): the embedded default.

Queues live in this process and one event loop; nothing survives a restart (the store's
outbox is what makes embedded mode durable: unacknowledged work is re-published from there).
It keeps the same semantics as the networked brokers: competing consumers, a visibility
timeout after which unacknowledged messages are delivered again, delayed requeue, and
dead-lettering.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from magicflow.brokers.base import Delivery


@dataclass(slots=True)
class _Message:
    body: bytes
    delivery_count: int = 0


@dataclass(slots=True)
class _Queue:
    ready: deque[_Message] = field(default_factory=deque)
    # receipt -> (message, visible again at)
    in_flight: dict[int, tuple[_Message, float]] = field(default_factory=dict)
    delayed: list[tuple[float, int, _Message]] = field(default_factory=list)
    dead: list[tuple[bytes, str]] = field(default_factory=list)
    waiters: set[asyncio.Future[None]] = field(default_factory=set)


class MemoryBroker:
    def __init__(self, visibility_timeout: float = 30.0) -> None:
        self.visibility_timeout = visibility_timeout
        self._queues: dict[str, _Queue] = {}
        self._receipts = itertools.count(1)

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        for queue in self._queues.values():
            for waiter in queue.waiters:
                if not waiter.done():
                    waiter.cancel()

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue()
        return queue

    def _wake(self, queue: _Queue) -> None:
        for waiter in queue.waiters:
            if not waiter.done():
                waiter.set_result(None)
        queue.waiters.clear()

    async def publish(self, queue: str, bodies: Sequence[bytes]) -> None:
        q = self._queue(queue)
        q.ready.extend(_Message(body) for body in bodies)
        if bodies:
            self._wake(q)

    def _reclaim(self, q: _Queue, now: float) -> float | None:
        """Move expired in-flight and due delayed messages back to ready; next due time.

        ``in_flight`` is kept in order of visibility deadline (``extend`` re-inserts), so
        only its head is ever looked at.
        """
        next_due: float | None = None
        expired: list[int] = []
        for receipt, (_, until) in q.in_flight.items():
            if until > now:
                next_due = until
                break
            expired.append(receipt)
        for receipt in expired:
            q.ready.append(q.in_flight.pop(receipt)[0])
        while q.delayed and q.delayed[0][0] <= now:
            q.ready.append(heapq.heappop(q.delayed)[2])
        if q.delayed and (next_due is None or q.delayed[0][0] < next_due):
            next_due = q.delayed[0][0]
        return next_due

    async def receive(self, queue: str, max_messages: int, wait: float) -> list[Delivery]:
        q = self._queue(queue)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait
        while True:
            now = time.monotonic()
            next_due = self._reclaim(q, now) if (q.in_flight or q.delayed) else None
            if q.ready:
                return self._take(queue, q, max_messages, now)
            remaining = give_up - loop.time()
            if remaining <= 0:
                return []
            if next_due is not None:
                remaining = min(remaining, max(next_due - now, 0.001))
            waiter: asyncio.Future[None] = loop.create_future()
            q.waiters.add(waiter)
            try:
                # Not wait_for: on Python 3.11 it can swallow a cancellation that races with
                # the waiter's completion, and a consumer being shut down would never stop.
                async with asyncio.timeout(remaining):
                    await waiter
            except TimeoutError:
                pass
            finally:
                q.waiters.discard(waiter)

    def _take(self, name: str, q: _Queue, max_messages: int, now: float) -> list[Delivery]:
        until = now + self.visibility_timeout
        taken: list[Delivery] = []
        while q.ready and len(taken) < max_messages:
            message = q.ready.popleft()
            message.delivery_count += 1
            receipt = next(self._receipts)
            q.in_flight[receipt] = (message, until)
            taken.append(Delivery(name, message.body, message.delivery_count, receipt))
        return taken

    def _settle(self, delivery: Delivery) -> _Message | None:
        q = self._queues.get(delivery.queue)
        if q is None or not isinstance(delivery.receipt, int):
            return None
        entry = q.in_flight.pop(delivery.receipt, None)
        return entry[0] if entry else None

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            self._settle(delivery)

    async def nack(
        self, deliveries: Sequence[Delivery], *, requeue: bool = True, delay: float = 0.0
    ) -> None:
        for delivery in deliveries:
            message = self._settle(delivery)
            if message is None or not requeue:
                continue
            q = self._queue(delivery.queue)
            if delay > 0:
                heapq.heappush(q.delayed, (time.monotonic() + delay, id(message), message))
            else:
                q.ready.append(message)
            self._wake(q)

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        until = time.monotonic() + seconds
        for delivery in deliveries:
            q = self._queues.get(delivery.queue)
            if q is not None and isinstance(delivery.receipt, int):
                entry = q.in_flight.pop(delivery.receipt, None)
                if entry is not None:
                    q.in_flight[delivery.receipt] = (entry[0], until)

    async def dead_letter(self, deliveries: Sequence[Delivery], reason: str) -> None:
        for delivery in deliveries:
            message = self._settle(delivery)
            if message is not None:
                self._queue(delivery.queue).dead.append((message.body, reason))

    async def dead_letters(self, queue: str, limit: int = 100) -> list[tuple[bytes, str]]:
        return list(self._queue(queue).dead[:limit])

    def depth(self, queue: str) -> int:
        """Messages waiting or in flight (for metrics and tests)."""
        q = self._queue(queue)
        return len(q.ready) + len(q.in_flight) + len(q.delayed)

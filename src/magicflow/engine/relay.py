"""Between the store and the broker: the outbox relay and the results consumer.

- ``OutboxRelay`` publishes the task messages a commit wrote (one ``publish`` per queue per
  batch) and reports which were published, so their outbox rows can be deleted. A publish
  that fails is retried with backoff; the rows stay in the store meanwhile, so a crash loses
  nothing (delivery is at least once).
- ``consume_results`` receives result messages in batches and hands them to the driver as
  ``TaskResult`` events, each with its delivery: the driver acks it once the transition that
  applied it has committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

import msgspec

from magicflow.brokers.base import RESULTS_QUEUE, Broker, MultiReceive
from magicflow.engine.batch import Item
from magicflow.engine.model import TaskResult
from magicflow.messages import decode_result
from magicflow.stores.base import OutboxMessage, Store

logger = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self,
        broker: Broker,
        on_published: Callable[[list[int]], None],
        *,
        retry_delay: float = 0.5,
        max_retry_delay: float = 30.0,
    ) -> None:
        self.broker = broker
        self.on_published = on_published
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._retry: list[OutboxMessage] = []
        self._failed = asyncio.Event()

    async def publish(self, messages: Sequence[OutboxMessage]) -> list[int]:
        """Publish ``messages`` grouped by queue; the ids published (the rest are retried)."""
        by_queue: dict[str, list[OutboxMessage]] = {}
        for message in messages:
            by_queue.setdefault(message.queue, []).append(message)
        published: list[int] = []
        for queue, group in by_queue.items():
            try:
                await self.broker.publish(queue, [m.body for m in group])
            except Exception as exc:
                logger.warning(
                    "publishing %d task(s) to %r failed (%s); retrying", len(group), queue, exc
                )
                self._retry.extend(group)
                self._failed.set()
            else:
                published.extend(m.id for m in group)
        return published

    async def republish(self, store: Store, page: int = 1000) -> int:
        """Publish what a previous run left in the store's outbox (at start-up); how many."""
        count = 0
        while True:
            pending = await store.pending_outbox(page)
            if not pending:
                return count
            published = await self.publish(pending)
            await store.delete_outbox(published)
            count += len(published)
            if len(published) < len(pending):
                return count  # the rest is retried by ``run``

    async def run(self) -> None:
        """Retry failed publishes with exponential backoff, until cancelled."""
        delay = self.retry_delay
        while True:
            await self._failed.wait()
            await asyncio.sleep(delay)
            retry, self._retry = self._retry, []
            self._failed.clear()
            published = await self.publish(retry)
            if published:
                self.on_published(published)
            delay = min(delay * 2, self.max_retry_delay) if self._retry else self.retry_delay


async def consume_results(
    broker: Broker,
    deliver: Callable[[list[Item]], Awaitable[None]],
    *,
    queue: str = RESULTS_QUEUE,
    queues: Callable[[], Sequence[str]] | None = None,
    batch: int = 1000,
    wait: float = 30.0,
    stopping: Callable[[], bool] = lambda: False,
) -> None:
    """Feed result messages from ``queue`` to the driver until cancelled (or ``stopping()``:
    a broker may swallow a cancellation that races with a message arriving). ``queues``: read
    those instead, all at once (``MultiReceive``), asking again every second."""
    decode_errors = (msgspec.DecodeError, msgspec.ValidationError)
    while not stopping():
        try:
            if queues is None:
                deliveries = await broker.receive(queue, batch, wait)
            elif names := queues():
                many = cast(MultiReceive, broker)
                deliveries = await many.receive_any(names, batch, min(wait, 1.0))
            else:
                await asyncio.sleep(0.5)
                continue
        except Exception:
            logger.exception("receiving results failed; retrying in 1s")
            await asyncio.sleep(1.0)
            continue
        items: list[Item] = []
        bad = []
        for delivery in deliveries:
            try:
                result = decode_result(delivery.body)
            except decode_errors:
                bad.append(delivery)
                continue
            items.append(Item(result.execution_id, TaskResult(result), delivery=delivery))
        if bad:
            logger.error("dead-lettering %d undecodable result message(s)", len(bad))
            await broker.dead_letter(bad, "undecodable result message")
        if items:
            await deliver(items)

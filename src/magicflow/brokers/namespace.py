"""Several deployments on one broker server: ``?namespace=NAME`` in any broker URL.

Every queue name the engine and executors use (``default``, ``email``, the results queue
``magicflow.results``) becomes ``NAME.QUEUE`` on the server, so services and executors that
share a namespace see each other's messages and nothing else. Without it, two services on one
broker would compete for the one results queue, each dropping the results of executions it does
not know (the other's). Deliveries keep the server's name of their queue (``delivery.queue``):
they go back to the same backend, which acknowledges them by it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import cast

from magicflow.brokers.base import Broker, Delivery, MultiReceive
from magicflow.errors import ConfigurationError

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_namespace(name: str) -> str:
    """``name`` if it can prefix a queue on every backend (a subject token, a stream key)."""
    if not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"invalid broker namespace {name!r}: use 1-64 letters, digits, '-' or '_'"
        )
    return name


class NamespacedBroker:
    """``inner`` with every queue name prefixed by ``namespace``."""

    def __init__(self, inner: Broker, namespace: str) -> None:
        self.inner = inner
        self.namespace = check_namespace(namespace)

    def name(self, queue: str) -> str:
        return f"{self.namespace}.{queue}"

    @property
    def visibility_timeout(self) -> float | None:
        """The backend's, which executors read to pace their heartbeats."""
        value = getattr(self.inner, "visibility_timeout", None)
        return float(value) if isinstance(value, int | float) else None

    async def connect(self) -> None:
        await self.inner.connect()

    async def close(self) -> None:
        await self.inner.close()

    async def publish(self, queue: str, bodies: Sequence[bytes]) -> None:
        await self.inner.publish(self.name(queue), bodies)

    async def receive(self, queue: str, max_messages: int, wait: float) -> list[Delivery]:
        return await self.inner.receive(self.name(queue), max_messages, wait)

    async def receive_any(
        self, queues: Sequence[str], max_messages: int, wait: float
    ) -> list[Delivery]:
        """For an inner broker that has it (see ``receives_any``)."""
        inner = cast(MultiReceive, self.inner)
        return await inner.receive_any([self.name(q) for q in queues], max_messages, wait)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        await self.inner.ack(deliveries)

    async def nack(
        self, deliveries: Sequence[Delivery], *, requeue: bool = True, delay: float = 0.0
    ) -> None:
        await self.inner.nack(deliveries, requeue=requeue, delay=delay)

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        await self.inner.extend(deliveries, seconds)

    async def dead_letter(self, deliveries: Sequence[Delivery], reason: str) -> None:
        await self.inner.dead_letter(deliveries, reason)

    async def dead_letters(self, queue: str, limit: int = 100) -> list[tuple[bytes, str]]:
        return await self.inner.dead_letters(self.name(queue), limit)

    async def delete_queue(self, queue: str) -> None:
        """Remove the queue from the server (operators and tests; not every backend has it)."""
        await self.inner.delete_queue(self.name(queue))  # type: ignore[attr-defined]

    async def stop_receiving(self, queue: str) -> None:
        """Give back what was delivered ahead of ``queue`` (see the RabbitMQ broker), where
        the backend has such a thing."""
        stop_receiving = getattr(self.inner, "stop_receiving", None)
        if stop_receiving is not None:
            await stop_receiving(self.name(queue))

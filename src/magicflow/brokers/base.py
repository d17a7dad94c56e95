"""The Broker Protocol: a few atomic primitives every message broker backend provides.

Semantics every backend keeps (the conformance suite checks them against the real server):

- ``publish`` is durable once it returns (publisher confirms where the broker has them).
- ``receive`` hands out each message to one consumer of the queue at a time (competing
  consumers); a message that is not acknowledged within the visibility timeout (or whose
  consumer disconnects) is delivered again, with ``delivery_count`` increased: delivery is at
  least once.
- ``extend`` pushes the visibility timeout of messages still being worked on (heartbeats).
- ``nack(requeue=True)`` makes messages visible again (after ``delay`` seconds, when given);
  ``dead_letter`` moves them to the queue's dead-letter queue with the reason.
- Optional: ``stop_receiving(queue)`` (RabbitMQ, NATS) gives back what was delivered to this
  process ahead of a ``receive`` that will not come (a service instance that gave up a
  partition calls it for that partition's results queue).
- Queue names are plain words (``default``, ``email``, ``magicflow.results``); a backend maps
  them to its own naming (a stream, a durable queue, a subject, a topic).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

RESULTS_QUEUE = "magicflow.results"


@dataclass(slots=True, eq=False)
class Delivery:
    """One received message. ``receipt`` is the backend's handle to acknowledge it; ``key``
    the message's key on brokers that have one (a Kafka record's key)."""

    queue: str
    body: bytes
    delivery_count: int
    receipt: object = field(default=None, repr=False)
    key: bytes | None = None


@runtime_checkable
class Broker(Protocol):
    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, queue: str, bodies: Sequence[bytes]) -> None:
        """Append messages to ``queue``; durable once this returns."""
        ...

    async def receive(self, queue: str, max_messages: int, wait: float) -> list[Delivery]:
        """Up to ``max_messages`` messages, waiting at most ``wait`` seconds for the first."""
        ...

    async def ack(self, deliveries: Sequence[Delivery]) -> None: ...

    async def nack(
        self, deliveries: Sequence[Delivery], *, requeue: bool = True, delay: float = 0.0
    ) -> None: ...

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        """Keep messages invisible to other consumers ``seconds`` longer (heartbeat)."""
        ...

    async def dead_letter(self, deliveries: Sequence[Delivery], reason: str) -> None: ...

    async def dead_letters(self, queue: str, limit: int = 100) -> list[tuple[bytes, str]]:
        """Messages dead-lettered from ``queue``, with their reasons (for operators and tests)."""
        ...


@runtime_checkable
class MultiReceive(Protocol):
    """A broker that can wait on several queues at once (one round trip for all of them)."""

    async def receive_any(
        self, queues: Sequence[str], max_messages: int, wait: float
    ) -> list[Delivery]:
        """Like ``receive``, from whichever of ``queues`` has messages."""
        ...


def receives_any(broker: Broker) -> bool:
    """Whether ``broker`` has a real ``receive_any`` (a wrapper answers for what it wraps)."""
    inner: Broker | None = getattr(broker, "inner", None)
    return receives_any(inner) if inner is not None else isinstance(broker, MultiReceive)

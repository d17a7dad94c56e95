"""RabbitMQ broker (``amqp://USER:PASSWORD@HOST:PORT/VHOST``), with aio-pika.

Each queue is a durable quorum queue ``magicflow.q.QUEUE``; messages are persistent and
published with publisher confirms (``publish`` returns once RabbitMQ has them). A consumer
with a prefetch (``prefetch``, default 200) feeds an internal buffer that ``receive`` takes
from; acks are manual.

- **Visibility timeout**: AMQP has none. A delivered message stays with its consumer until it
  is acked or nacked or the consumer's channel closes (the process exits or loses its
  connection); then RabbitMQ delivers it again. ``extend`` is therefore a no-op, and a step
  that hangs keeps its message until its executor stops.
- **Delivery count**: quorum queues count returned deliveries (``x-delivery-count``); a
  message requeued with a delay carries the count so far in ``x-magicflow-deliveries``.
- ``nack(requeue=True)`` returns the message to the queue; with a delay it is re-published to
  a TTL queue ``magicflow.delay.QUEUE.MS`` that dead-letters back into the queue when the time
  is up (the TTL queue removes itself when unused), and the original is acked.
  ``nack(requeue=False)`` drops it.
- ``dead_letter`` publishes to the durable queue ``magicflow.dead.QUEUE`` with the reason in the
  ``x-magicflow-reason`` header, then acks the original.

Options in the URL's query: ``prefetch`` (messages delivered ahead per queue).
aio-pika's robust connection reconnects after a server restart and restores the consumers;
an operation during an outage raises ``BrokerError``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, NoReturn
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, PublishError

from magicflow.brokers.base import Delivery
from magicflow.errors import BrokerError, ConfigurationError

logger = logging.getLogger(__name__)

REASON_HEADER: Final = "x-magicflow-reason"
COUNT_HEADER: Final = "x-magicflow-deliveries"
TIMEOUT: Final = 10.0
DEFAULT_VISIBILITY_TIMEOUT: Final = 30.0  # only for heartbeat pacing: AMQP has none


def _options(query: str) -> int:
    values = parse_qs(query)
    # visibility_timeout is accepted (URLs are shared between backends) but means nothing here
    unknown = sorted(set(values) - {"prefetch", "visibility_timeout"})
    if unknown:
        raise ConfigurationError(f"rabbitmq broker: unknown URL option {unknown[0]!r}")
    try:
        prefetch = int(values.get("prefetch", ["200"])[-1])
    except ValueError:
        raise ConfigurationError("rabbitmq broker: prefetch must be an integer") from None
    if prefetch < 1:
        raise ConfigurationError("rabbitmq broker: prefetch must be at least 1")
    return prefetch


def _fail(exc: BaseException) -> NoReturn:
    raise BrokerError(f"rabbitmq broker: {type(exc).__name__}: {exc}") from exc


@asynccontextmanager
async def _errors() -> AsyncIterator[None]:
    """Driver errors become ``BrokerError`` here, at the edge."""
    try:
        yield
    except (AMQPError, ChannelInvalidStateError, OSError) as exc:
        _fail(exc)


def _queue_name(queue: str) -> str:
    return f"magicflow.q.{queue}"


def _dead_name(queue: str) -> str:
    return f"magicflow.dead.{queue}"


_QUORUM: Final = {"x-queue-type": "quorum"}


class RabbitMQBroker:
    visibility_timeout = DEFAULT_VISIBILITY_TIMEOUT

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.prefetch = _options(parts.query)
        self._url = urlunsplit(parts._replace(query=""))
        self._connection: AbstractRobustConnection | None = None
        self._publishing: AbstractRobustChannel | None = None
        self._consuming: AbstractRobustChannel | None = None
        self._declared: set[str] = set()
        self._buffers: dict[str, asyncio.Queue[AbstractIncomingMessage]] = {}
        self._consumers: dict[str, tuple[AbstractQueue, str]] = {}
        self._starting = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        if self._connection is not None:
            return
        async with _errors():
            connection = await aio_pika.connect_robust(self._url, timeout=TIMEOUT)
            try:
                self._publishing = await connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
                self._consuming = await connection.channel()
                await self._consuming.set_qos(prefetch_count=self.prefetch)
            except BaseException:
                await connection.close()
                raise
        self._connection = connection

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        self._publishing = self._consuming = None
        self._declared.clear()
        self._buffers.clear()
        self._consumers.clear()
        if connection is not None:
            try:
                await connection.close()
            except (AMQPError, OSError) as exc:
                logger.warning("rabbitmq broker: closing: %s", exc)

    @property
    def _channel(self) -> AbstractRobustChannel:
        if self._publishing is None:
            raise BrokerError("rabbitmq broker: not connected (call connect() first)")
        return self._publishing

    async def _declare(self, name: str, arguments: dict[str, Any], *, again: bool = False) -> None:
        if name in self._declared and not again:
            return
        await self._channel.declare_queue(name, durable=True, arguments=arguments)
        self._declared.add(name)

    # ------------------------------------------------------------------ publishing

    async def _publish(
        self,
        routing_key: str,
        bodies: Sequence[bytes],
        headers: dict[str, Any] | None = None,
    ) -> None:
        exchange = self._channel.default_exchange
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        body,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        headers=headers,
                    ),
                    routing_key=routing_key,
                    timeout=TIMEOUT,
                )
                for body in bodies
            )
        )

    async def publish(self, queue: str, bodies: Sequence[bytes]) -> None:
        if not bodies:
            return
        name = _queue_name(queue)
        async with _errors():
            await self._declare(name, _QUORUM)
            try:
                await self._publish(name, bodies)
            except PublishError:  # returned: the queue was deleted meanwhile
                await self._declare(name, _QUORUM, again=True)
                await self._publish(name, bodies)

    # ------------------------------------------------------------------ receiving

    async def _buffer(self, queue: str) -> asyncio.Queue[AbstractIncomingMessage]:
        buffer = self._buffers.get(queue)
        if buffer is not None:
            return buffer
        async with self._starting:
            buffer = self._buffers.get(queue)
            if buffer is None:
                if self._consuming is None:
                    raise BrokerError("rabbitmq broker: not connected (call connect() first)")
                buffer = asyncio.Queue()
                name = _queue_name(queue)
                await self._declare(name, _QUORUM)
                declared = await self._consuming.declare_queue(
                    name, durable=True, arguments=_QUORUM
                )
                tag = await declared.consume(buffer.put, no_ack=False)
                self._consumers[queue] = (declared, tag)
                self._buffers[queue] = buffer
        return buffer

    async def receive(self, queue: str, max_messages: int, wait: float) -> list[Delivery]:
        async with _errors():
            buffer = await self._buffer(queue)
        taken: list[Delivery] = []
        while len(taken) < max_messages and not buffer.empty():
            _take(queue, buffer.get_nowait(), taken)
        if taken or wait <= 0:
            return taken
        try:
            async with asyncio.timeout(wait):
                while not taken:
                    _take(queue, await buffer.get(), taken)
        except TimeoutError:
            return taken
        while len(taken) < max_messages and not buffer.empty():
            _take(queue, buffer.get_nowait(), taken)
        return taken

    # ------------------------------------------------------------------ settling

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        async with _errors():
            for delivery in deliveries:
                await _message(delivery).ack()

    async def nack(
        self, deliveries: Sequence[Delivery], *, requeue: bool = True, delay: float = 0.0
    ) -> None:
        async with _errors():
            if requeue and delay > 0:
                await self._delay(deliveries, delay)
                return
            for delivery in deliveries:
                await _message(delivery).nack(requeue=requeue)

    async def _delay(self, deliveries: Sequence[Delivery], delay: float) -> None:
        ms = max(1, int(delay * 1000))
        by_queue: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            by_queue.setdefault(delivery.queue, []).append(delivery)
        for queue, group in by_queue.items():
            name = f"magicflow.delay.{queue}.{ms}"
            arguments = {
                "x-message-ttl": ms,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": _queue_name(queue),
                "x-expires": ms + 60_000,
            }
            # declared before every use: a queue unused for x-expires is removed, messages too
            await self._declare(name, arguments, again=True)
            for delivery in group:
                await self._publish(
                    name, [delivery.body], headers={COUNT_HEADER: delivery.delivery_count}
                )
                await _message(delivery).ack()

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        """A no-op: a message stays with its consumer until settled or the channel closes."""

    async def dead_letter(self, deliveries: Sequence[Delivery], reason: str) -> None:
        async with _errors():
            for delivery in deliveries:
                name = _dead_name(delivery.queue)
                await self._declare(name, {})
                await self._publish(name, [delivery.body], headers={REASON_HEADER: reason})
                await _message(delivery).ack()

    async def dead_letters(self, queue: str, limit: int = 100) -> list[tuple[bytes, str]]:
        """Read without removing: the messages are taken unacked on a channel of their own,
        which is then closed, so RabbitMQ puts them back where they were."""
        if self._connection is None:
            raise BrokerError("rabbitmq broker: not connected (call connect() first)")
        found: list[tuple[bytes, str]] = []
        async with _errors():
            await self._declare(_dead_name(queue), {})
            channel = await self._connection.channel(publisher_confirms=False)
            try:
                dead = await channel.declare_queue(_dead_name(queue), durable=True)
                while len(found) < limit:
                    message = await dead.get(no_ack=False, fail=False, timeout=TIMEOUT)
                    if message is None:
                        break
                    reason = (message.headers or {}).get(REASON_HEADER, "")
                    found.append((message.body, _text(reason)))
            finally:
                await channel.close()
        return found

    async def stop_receiving(self, queue: str) -> None:
        """Stop consuming ``queue``: cancel its consumer and requeue what RabbitMQ delivered
        ahead (prefetch) that no ``receive`` took. AMQP has no visibility timeout: a process
        that stops reading a queue but stays connected would hold those messages, unacked,
        away from every other consumer until it disconnects."""
        consumer = self._consumers.pop(queue, None)
        buffer = self._buffers.pop(queue, None)
        async with _errors():
            if consumer is not None:
                await consumer[0].cancel(consumer[1])
            if buffer is None:
                return
            await asyncio.sleep(0)  # deliveries that arrived before the cancel was confirmed
            while not buffer.empty():
                message = buffer.get_nowait()
                if not message.channel.is_closed:
                    await message.nack(requeue=True)
                if buffer.empty():
                    await asyncio.sleep(0)

    # ------------------------------------------------------------------ operators and tests

    async def delete_queue(self, queue: str) -> None:
        """Remove the queue and its dead-letter queue (delay queues remove themselves)."""
        if self._consuming is None:
            raise BrokerError("rabbitmq broker: not connected (call connect() first)")
        async with _errors():
            consumer = self._consumers.pop(queue, None)
            self._buffers.pop(queue, None)
            if consumer is not None:
                await consumer[0].cancel(consumer[1])
            for name in (_queue_name(queue), _dead_name(queue)):
                await self._channel.queue_delete(name)
                self._declared.discard(name)


def _take(queue: str, message: AbstractIncomingMessage, taken: list[Delivery]) -> None:
    if message.channel.is_closed:  # delivered before a reconnect: RabbitMQ has it again
        return
    headers = message.headers or {}
    prior = _int(headers.get(COUNT_HEADER)) + _int(headers.get("x-delivery-count"))
    taken.append(Delivery(queue, message.body, prior + 1, message))


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _message(delivery: Delivery) -> AbstractIncomingMessage:
    if not isinstance(delivery.receipt, aio_pika.IncomingMessage):
        raise BrokerError(f"rabbitmq broker: not a delivery of this broker: {delivery!r}")
    return delivery.receipt

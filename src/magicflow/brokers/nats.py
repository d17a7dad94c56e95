"""NATS JetStream broker (``nats://HOST:PORT``).

One work-queue stream, ``MAGICFLOW``, holds every queue (subject ``magicflow.q.QUEUE``); each
queue has one durable pull consumer (``magicflow-QUEUE``, explicit acks, ``ack_wait`` = the
visibility timeout) shared by every broker object, so consumers compete. Dead letters go to the
``MAGICFLOW_DEAD`` stream (subject ``magicflow.dead.QUEUE``, the reason in the
``Magicflow-Reason`` header).

- ``receive``: a ``no_wait`` pull for what is there; when nothing is, one pull request that the
  server answers as soon as a message arrives (woken, not polling) or when ``wait`` runs out.
- ``ack`` removes the message (work-queue retention); ``extend`` is ``+WPI`` (in progress),
  which restarts the full ``ack_wait``; ``nack(requeue=True, delay=...)`` is ``-NAK`` with that
  delay; ``nack(requeue=False)`` is ``+TERM``.
- ``dead_letter`` publishes to the dead-letter stream (deduplicated by ``Nats-Msg-Id``, from
  the message's stream sequence), then terminates the message.

Options in the URL's query: ``visibility_timeout`` (seconds, default 30), ``max_deliver``
(default -1: unlimited; the executor dead-letters messages delivered too often itself).
The client reconnects forever after a server restart; an operation during an outage raises
``BrokerError``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Final, NoReturn
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from magicflow.brokers.base import Delivery
from magicflow.errors import BrokerError, ConfigurationError

logger = logging.getLogger(__name__)

STREAM: Final = "MAGICFLOW"
DEAD_STREAM: Final = "MAGICFLOW_DEAD"
REASON_HEADER: Final = "Magicflow-Reason"
API_TIMEOUT: Final = 5.0
FLUSH_TIMEOUT: Final = 5
CONNECT_TIMEOUT: Final = 10.0
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _options(query: str) -> tuple[float, int]:
    values = parse_qs(query)
    unknown = sorted(set(values) - {"visibility_timeout", "max_deliver"})
    if unknown:
        raise ConfigurationError(f"nats broker: unknown URL option {unknown[0]!r}")
    try:
        seconds = float(values.get("visibility_timeout", ["30"])[-1])
        max_deliver = int(values.get("max_deliver", ["-1"])[-1])
    except ValueError:
        raise ConfigurationError(
            "nats broker: visibility_timeout must be a number and max_deliver an integer"
        ) from None
    if seconds <= 0:
        raise ConfigurationError("nats broker: visibility_timeout must be positive")
    return seconds, max_deliver


def _fail(exc: BaseException) -> NoReturn:
    raise BrokerError(f"nats broker: {type(exc).__name__}: {exc}") from exc


@asynccontextmanager
async def _errors() -> AsyncIterator[None]:
    """Driver errors become ``BrokerError`` here, at the edge."""
    try:
        yield
    except (nats.errors.Error, OSError) as exc:
        _fail(exc)


class _Puller:
    """The pull side of one queue's consumer: an inbox of our own that replies arrive in."""

    def __init__(self, client: Client, queue: str, durable: str) -> None:
        self.client = client
        self.queue = queue
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{durable}"
        self.inbox = client.new_inbox()
        self.replies: asyncio.Queue[Msg] = asyncio.Queue()
        self.lock = asyncio.Lock()
        self.subscription: Subscription | None = None

    async def start(self) -> None:
        self.subscription = await self.client.subscribe(self.inbox, cb=self._arrived)

    async def _arrived(self, msg: Msg) -> None:
        self.replies.put_nowait(msg)

    async def pull(self, max_messages: int, wait: float) -> list[Msg]:
        async with self.lock:
            got = self._stale(max_messages)
            if len(got) < max_messages:
                got += await self._request(max_messages - len(got), None)
            deadline = time.monotonic() + wait
            while not got:
                remaining = deadline - time.monotonic()
                if remaining < 0.01:
                    return []
                got = await self._request(1, remaining)  # answered when a message arrives
                if got and max_messages > 1:
                    got += await self._request(max_messages - 1, None)
            return got

    def _stale(self, limit: int) -> list[Msg]:
        """Messages that answered earlier pulls after they gave up (a cancelled receive)."""
        got: list[Msg] = []
        while len(got) < limit and not self.replies.empty():
            msg = self.replies.get_nowait()
            if not _status(msg):
                got.append(msg)
        return got

    async def _request(self, batch: int, expires: float | None) -> list[Msg]:
        """One pull: ``no_wait`` when ``expires`` is None, else a long poll of that long."""
        request: dict[str, object] = {"batch": batch}
        if expires is None:
            request["no_wait"] = True
        else:
            request["expires"] = int(expires * 1e9)
        await self.client.publish(self.next_subject, json.dumps(request).encode(), self.inbox)
        give_up = time.monotonic() + (expires or 0) + API_TIMEOUT
        got: list[Msg] = []
        while len(got) < batch:
            try:
                async with asyncio.timeout(max(give_up - time.monotonic(), 0.001)):
                    msg = await self.replies.get()
            except TimeoutError:
                raise BrokerError("nats broker: no answer to a pull request") from None
            status = _status(msg)
            if status is None:
                got.append(msg)
            elif status in ("404", "408", "409"):  # no messages, expired, limits: done
                break
            elif status != "100":  # 100: idle heartbeat
                raise BrokerError(f"nats broker: pull failed: {status} {_description(msg)}")
        return got

    async def stop(self) -> None:
        if self.subscription is not None:
            await self.subscription.unsubscribe()


def _status(msg: Msg) -> str | None:
    return msg.headers.get("Status") if msg.headers else None


def _description(msg: Msg) -> str:
    return msg.headers.get("Description", "") if msg.headers else ""


class NatsBroker:
    def __init__(self, url: str, *, visibility_timeout: float | None = None) -> None:
        parts = urlsplit(url)
        vt, self.max_deliver = _options(parts.query)
        self.visibility_timeout = visibility_timeout or vt
        self._url = urlunsplit(parts._replace(query=""))
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._pullers: dict[str, _Puller] = {}
        self._creating: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        if self._client is not None:
            return
        async with _errors():
            try:
                # the client retries forever, the first connection too: give up on that one
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    client = await self._connect()
            except TimeoutError:
                raise BrokerError(f"nats broker: cannot connect to {self._url}") from None
            js = client.jetstream(timeout=API_TIMEOUT)
            try:
                await self._ensure_stream(js, STREAM, ["magicflow.q.>"], RetentionPolicy.WORK_QUEUE)
                await self._ensure_stream(js, DEAD_STREAM, ["magicflow.dead.>"], None)
            except BaseException:
                await client.close()
                raise
        self._client, self._js = client, js

    async def _connect(self) -> Client:
        return await nats.connect(
            self._url,
            connect_timeout=5,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )

    @staticmethod
    async def _ensure_stream(
        js: JetStreamContext, name: str, subjects: list[str], retention: RetentionPolicy | None
    ) -> None:
        try:
            await js.stream_info(name)
            return
        except nats.js.errors.NotFoundError:
            pass
        config = StreamConfig(
            name=name,
            subjects=subjects,
            retention=retention or RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=120.0,
        )
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:  # created meanwhile by another process
            await js.stream_info(name)

    async def _on_error(self, exc: Exception) -> None:
        if self._client is None:  # still connecting: connect() says what went wrong
            logger.debug("nats broker: %s: %s", type(exc).__name__, exc)
            return
        logger.warning("nats broker: %s: %s", type(exc).__name__, exc)

    async def _on_disconnected(self) -> None:
        if self._client is None:  # closing
            return
        logger.warning("nats broker: disconnected; reconnecting")

    async def _on_reconnected(self) -> None:
        logger.info("nats broker: reconnected")

    async def close(self) -> None:
        client, self._client, self._js = self._client, None, None
        self._pullers.clear()
        if client is not None:
            try:
                await client.close()
            except nats.errors.Error as exc:
                logger.warning("nats broker: closing: %s", exc)

    @property
    def client(self) -> Client:
        if self._client is None:
            raise BrokerError("nats broker: not connected (call connect() first)")
        return self._client

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise BrokerError("nats broker: not connected (call connect() first)")
        return self._js

    # ------------------------------------------------------------------ naming

    @staticmethod
    def _subject(queue: str) -> str:
        return f"magicflow.q.{queue}"

    @staticmethod
    def _dead_subject(queue: str) -> str:
        return f"magicflow.dead.{queue}"

    @staticmethod
    def _durable(queue: str) -> str:
        return "magicflow-" + _UNSAFE.sub("_", queue)

    async def _puller(self, queue: str) -> _Puller:
        puller = self._pullers.get(queue)
        if puller is not None:
            return puller
        lock = self._creating.setdefault(queue, asyncio.Lock())
        async with lock:
            puller = self._pullers.get(queue)
            if puller is None:
                durable = self._durable(queue)
                await self._ensure_consumer(queue, durable)
                puller = _Puller(self.client, queue, durable)
                await puller.start()
                self._pullers[queue] = puller
        return puller

    async def _ensure_consumer(self, queue: str, durable: str) -> None:
        try:
            await self.js.consumer_info(STREAM, durable)
            return
        except nats.js.errors.NotFoundError:
            pass
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.visibility_timeout,
            max_deliver=self.max_deliver,
            max_ack_pending=-1,
            filter_subject=self._subject(queue),
        )
        await self.js.add_consumer(STREAM, config)

    # ------------------------------------------------------------------ the protocol

    async def publish(self, queue: str, bodies: Sequence[bytes]) -> None:
        if not bodies:
            return
        subject = self._subject(queue)
        async with _errors():
            acks = [await self.js.publish_async(subject, body) for body in bodies]
            async with asyncio.timeout(API_TIMEOUT):
                await asyncio.gather(*acks)

    async def receive(self, queue: str, max_messages: int, wait: float) -> list[Delivery]:
        async with _errors():
            puller = await self._puller(queue)
            msgs = await puller.pull(max_messages, wait)
        return [Delivery(queue, msg.data, msg.metadata.num_delivered, msg) for msg in msgs]

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        async with _errors():
            for delivery in deliveries:
                await _msg(delivery).ack()
            if deliveries:
                await self.client.flush(FLUSH_TIMEOUT)

    async def nack(
        self, deliveries: Sequence[Delivery], *, requeue: bool = True, delay: float = 0.0
    ) -> None:
        async with _errors():
            for delivery in deliveries:
                msg = _msg(delivery)
                if requeue:
                    await msg.nak(delay=delay if delay > 0 else None)
                else:
                    await msg.term()
            if deliveries:
                await self.client.flush(FLUSH_TIMEOUT)

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        """``+WPI``: the server restarts the message's full ``ack_wait`` (``seconds`` is not
        used: JetStream has no other length)."""
        async with _errors():
            for delivery in deliveries:
                await _msg(delivery).in_progress()
            if deliveries:
                await self.client.flush(FLUSH_TIMEOUT)

    async def dead_letter(self, deliveries: Sequence[Delivery], reason: str) -> None:
        async with _errors():
            for delivery in deliveries:
                msg = _msg(delivery)
                headers = {
                    REASON_HEADER: quote(reason, safe=" "),
                    "Nats-Msg-Id": f"{delivery.queue}:{msg.metadata.sequence.stream}",
                }
                await self.js.publish(
                    self._dead_subject(delivery.queue), delivery.body, headers=headers
                )
                await msg.term()
            if deliveries:
                await self.client.flush(FLUSH_TIMEOUT)

    async def dead_letters(self, queue: str, limit: int = 100) -> list[tuple[bytes, str]]:
        found: list[tuple[bytes, str]] = []
        seq = 1
        async with _errors():
            while len(found) < limit:
                try:
                    raw = await self.js.get_msg(
                        DEAD_STREAM, seq=seq, subject=self._dead_subject(queue), next=True
                    )
                except nats.js.errors.NotFoundError:
                    break
                reason = (raw.headers or {}).get(REASON_HEADER, "")
                found.append((raw.data or b"", unquote(reason)))
                if raw.seq is None:
                    break
                seq = raw.seq + 1
        return found

    # ------------------------------------------------------------------ operators and tests

    async def stop_receiving(self, queue: str) -> None:
        """Stop pulling ``queue``: unsubscribe its inbox and nak the messages that answered
        pulls nobody waits for any more (a cancelled receive leaves them behind), so that
        JetStream delivers them again at once to the queue's other consumers."""
        puller = self._pullers.pop(queue, None)
        if puller is None:
            return
        async with _errors():
            await puller.stop()
            for msg in puller._stale(puller.replies.qsize()):
                await msg.nak()

    async def delete_queue(self, queue: str) -> None:
        """Remove the queue's consumer, its messages and its dead letters."""
        puller = self._pullers.pop(queue, None)
        async with _errors():
            if puller is not None:
                await puller.stop()
            with suppress(nats.js.errors.NotFoundError):
                await self.js.delete_consumer(STREAM, self._durable(queue))
            await self.js.purge_stream(STREAM, subject=self._subject(queue))
            await self.js.purge_stream(DEAD_STREAM, subject=self._dead_subject(queue))


def _msg(delivery: Delivery) -> Msg:
    if not isinstance(delivery.receipt, Msg):
        raise BrokerError(f"nats broker: not a delivery of this broker: {delivery!r}")
    return delivery.receipt

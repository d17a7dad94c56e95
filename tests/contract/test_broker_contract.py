"""The Broker contract: one suite, run against every backend and its real server (the rules are
in brokers/base.py). A missing server is a failure, never a skip.

Server URLs come from ``MAGICFLOW_TEST_REDIS_URL``, ``MAGICFLOW_TEST_AMQP_URL`` and
``MAGICFLOW_TEST_NATS_URL`` (loopback defaults); Kafka is a Tansu server the tests start (or
``MAGICFLOW_TEST_KAFKA_URL``, see tests/tansu.py). Every test uses queues of its own and
removes them afterwards, so runs don't collide.

RabbitMQ has no visibility timeout: a message is redelivered when its consumer's channel
closes (so the redelivery test closes the first consumer there), and ``extend`` is a no-op.

Kafka gives each partition to one member of the group: a message that times out is handed out
again by the member that owns its partition (the redelivery test checks that first), and goes
to another member when the owner leaves the group (closes, or dies and misses its heartbeats).
The delivery count travels to the new owner in the commit's metadata where the server keeps it
(Apache Kafka, Redpanda); Tansu drops commit metadata, so there the count starts again.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import pytest

from magicflow.brokers import RESULTS_QUEUE, Broker, Delivery, broker_from_url
from magicflow.brokers.base import MultiReceive, receives_any
from magicflow.brokers.memory import MemoryBroker
from magicflow.brokers.namespace import NamespacedBroker
from magicflow.errors import ConfigurationError

from ..tansu import kafka_url, with_options

__all__ = ["kafka_url"]  # a fixture

pytestmark = pytest.mark.services

VT = 1.0  # visibility timeout of the brokers under test, seconds

URLS = {
    "redis": os.environ.get("MAGICFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "rabbitmq": os.environ.get("MAGICFLOW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    "nats": os.environ.get("MAGICFLOW_TEST_NATS_URL", "nats://127.0.0.1:4222"),
}
BACKENDS = ["memory", "redis", "rabbitmq", "nats", "kafka"]

Factory = Callable[[], Awaitable[Broker]]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def queue() -> str:
    return f"contract-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest) -> str:
    """The server of ``backend`` (Kafka: one the tests start)."""
    if backend == "kafka":
        return str(request.getfixturevalue("kafka_url"))
    return URLS.get(backend, "memory://")


@pytest.fixture
async def make(backend: str, queue: str, url: str) -> AsyncIterator[Factory]:
    """Connected brokers: each call is another consumer (memory: the one shared broker)."""
    made: list[Broker] = []
    shared = MemoryBroker(visibility_timeout=VT)

    async def factory() -> Broker:
        if backend == "memory":
            return shared
        broker = broker_from_url(with_options(url, f"visibility_timeout={VT}"))
        await broker.connect()
        made.append(broker)
        return broker

    try:
        yield factory
    finally:
        if made:
            cleaner = broker_from_url(url)
            await cleaner.connect()
            await cleaner.delete_queue(queue)  # type: ignore[attr-defined]
            await cleaner.close()
        for broker in made:
            await broker.close()


async def take(broker: Broker, queue: str, n: int, within: float = 5.0) -> list[Delivery]:
    """Receive until ``n`` messages came (or ``within`` seconds passed)."""
    got: list[Delivery] = []
    deadline = time.monotonic() + within
    while len(got) < n and time.monotonic() < deadline:
        got += await broker.receive(queue, n - len(got), 0.5)
    return got


def bodies(n: int) -> list[bytes]:
    return [f"message-{i}".encode() for i in range(n)]


async def test_publish_receive_in_order(make: Factory, queue: str) -> None:
    broker = await make()
    await broker.publish(queue, bodies(5))
    got = await take(broker, queue, 5)
    assert [d.body for d in got] == bodies(5)
    assert all(d.delivery_count == 1 and d.queue == queue for d in got)
    await broker.ack(got)


async def test_competing_consumers_get_disjoint_messages(make: Factory, queue: str) -> None:
    first, second = await make(), await make()
    await first.publish(queue, bodies(40))

    async def consume(broker: Broker, seen: list[bytes]) -> None:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            got = await broker.receive(queue, 3, 0.3)
            seen.extend(d.body for d in got)
            await broker.ack(got)
            if not got and len(seen_a) + len(seen_b) >= 40:
                return

    seen_a: list[bytes] = []
    seen_b: list[bytes] = []
    await asyncio.gather(consume(first, seen_a), consume(second, seen_b))
    assert not set(seen_a) & set(seen_b)
    assert sorted(seen_a + seen_b) == sorted(bodies(40))


async def test_ack_removes(make: Factory, queue: str) -> None:
    broker = await make()
    await broker.publish(queue, [b"once"])
    got = await take(broker, queue, 1)
    await broker.ack(got)
    await asyncio.sleep(VT * 1.3)
    assert await broker.receive(queue, 10, 0.5) == []


async def test_unacked_is_delivered_again_after_the_visibility_timeout(
    make: Factory, backend: str, queue: str
) -> None:
    first, second = await make(), await make()
    await first.publish(queue, [b"work"])
    [delivery] = await take(first, queue, 1)
    assert delivery.delivery_count == 1
    count = 2
    if backend == "kafka":  # the partition's owner hands it out again itself
        started = time.monotonic()
        [delivery] = await take(first, queue, 1, within=VT * 4)
        assert (delivery.body, delivery.delivery_count) == (b"work", 2)
        assert VT * 0.8 <= time.monotonic() - started < VT * 3
        count = 3
    assert await second.receive(queue, 10, VT * 0.3) == []  # invisible meanwhile
    if backend in ("rabbitmq", "kafka"):  # redelivered when the consumer leaves
        await first.close()
    # a Kafka group takes seconds to rebalance (Tansu: rounds of half the session timeout)
    within = 10.0 if backend == "kafka" else VT * 3
    started = time.monotonic()
    again = await take(second, queue, 1, within=within + VT)
    assert [d.body for d in again] == [b"work"]
    if backend == "kafka" and again[0].delivery_count == 1:
        count = 1  # a server that drops commit metadata (Tansu): the count starts again
    assert again[0].delivery_count == count
    assert time.monotonic() - started < within
    await second.ack(again)


async def test_extend_keeps_it_invisible(make: Factory, queue: str) -> None:
    first, second = await make(), await make()
    await first.publish(queue, [b"slow"])
    [delivery] = await take(first, queue, 1)
    for _ in range(3):  # heartbeats well past the visibility timeout
        await asyncio.sleep(VT * 0.5)
        await first.extend([delivery], VT)
    assert await second.receive(queue, 10, VT * 0.4) == []
    await first.ack([delivery])
    assert await second.receive(queue, 10, VT * 1.3) == []


async def test_nack_requeues_at_once(make: Factory, queue: str) -> None:
    broker = await make()
    await broker.publish(queue, [b"again"])
    got = await take(broker, queue, 1)
    await broker.nack(got)
    started = time.monotonic()
    again = await take(broker, queue, 1)
    assert [(d.body, d.delivery_count) for d in again] == [(b"again", 2)]
    assert time.monotonic() - started < VT * 0.9  # not left to the visibility timeout
    await broker.ack(again)


async def test_nack_with_delay(make: Factory, queue: str) -> None:
    broker = await make()
    await broker.publish(queue, [b"later"])
    got = await take(broker, queue, 1)
    started = time.monotonic()
    await broker.nack(got, delay=1.5)
    assert await broker.receive(queue, 10, 0.6) == []
    again = await take(broker, queue, 1, within=6)
    elapsed = time.monotonic() - started
    assert [(d.body, d.delivery_count) for d in again] == [(b"later", 2)]
    assert 1.3 <= elapsed < 4.0
    await broker.ack(again)


async def test_nack_without_requeue_drops(make: Factory, queue: str) -> None:
    broker = await make()
    await broker.publish(queue, [b"drop"])
    got = await take(broker, queue, 1)
    await broker.nack(got, requeue=False)
    assert await broker.receive(queue, 10, VT * 1.5) == []
    assert await broker.dead_letters(queue) == []


async def test_dead_letter_keeps_the_reason(make: Factory, queue: str) -> None:
    broker = await make()
    await broker.publish(queue, [b"poison", b"fine", b"bad"])
    got = await take(broker, queue, 3)
    by_body = {d.body: d for d in got}
    await broker.dead_letter([by_body[b"poison"]], "delivered too often")
    await broker.dead_letter([by_body[b"bad"]], "undecodable: ünïcode")
    await broker.ack([by_body[b"fine"]])
    assert await broker.dead_letters(queue) == [
        (b"poison", "delivered too often"),
        (b"bad", "undecodable: ünïcode"),
    ]
    assert await broker.dead_letters(queue, limit=1) == [(b"poison", "delivered too often")]
    assert await broker.receive(queue, 10, VT * 1.5) == []


async def test_stop_receiving_hands_back_what_was_delivered_ahead(
    make: Factory, backend: str, queue: str
) -> None:
    """A process that stops reading a queue but stays connected (a service instance that
    gave up a partition) must not keep the messages pushed to it ahead of time."""
    first, second = await make(), await make()
    stop_receiving = getattr(first, "stop_receiving", None)
    if stop_receiving is None:
        pytest.skip(f"{backend}: consumers pull, nothing is delivered ahead")
    await first.publish(queue, bodies(5))
    got = await take(first, queue, 1)  # the other four are delivered ahead (prefetch)
    await stop_receiving(queue)
    if backend == "kafka":  # a partition moves whole: the message taken, not settled, too
        rest = await take(second, queue, 5, within=10)
        assert sorted(d.body for d in rest) == bodies(5)
        await second.ack(rest)
        return
    rest = await take(second, queue, 4)
    assert sorted(d.body for d in got + rest) == bodies(5)
    await first.ack(got)
    await second.ack(rest)


async def test_receive_waits_at_most_wait(make: Factory, queue: str) -> None:
    broker = await make()
    started = time.monotonic()
    assert await broker.receive(queue, 10, 0.5) == []
    assert 0.4 <= time.monotonic() - started < 1.5


async def test_receive_wakes_promptly_on_publish(make: Factory, backend: str, queue: str) -> None:
    consumer, producer = await make(), await make()
    # the queue exists, the consumer is set up (a Kafka consumer has joined its group)
    assert await consumer.receive(queue, 1, 2.5 if backend == "kafka" else 0.05) == []
    waiting = asyncio.create_task(consumer.receive(queue, 10, 10.0))
    await asyncio.sleep(0.3)
    published = time.monotonic()
    await producer.publish(queue, [b"wake"])
    got = await waiting
    assert [d.body for d in got] == [b"wake"]
    assert time.monotonic() - published < 0.5
    await consumer.ack(got)


async def test_batch_sizes(make: Factory, queue: str) -> None:
    broker = await make()
    await broker.publish(queue, bodies(10))
    got: list[Delivery] = []
    deadline = time.monotonic() + 5
    while len(got) < 10 and time.monotonic() < deadline:
        batch = await broker.receive(queue, 4, 0.5)
        assert len(batch) <= 4
        got += batch
    assert sorted(d.body for d in got) == sorted(bodies(10))
    await broker.ack(got)
    await broker.publish(queue, [])  # publishing nothing is harmless


async def test_large_and_binary_bodies(make: Factory, queue: str) -> None:
    broker = await make()
    large = os.urandom(512 * 1024)
    every_byte = bytes(range(256)) * 4
    await broker.publish(queue, [large, every_byte, b""])
    got = await take(broker, queue, 3)
    assert [d.body for d in got] == [large, every_byte, b""]
    await broker.ack(got)


# ---------------------------------------------------------------------- choosing a backend


def test_unknown_scheme_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unsupported broker URL"):
        broker_from_url("carrier-pigeon://loft")


@pytest.mark.parametrize(
    ("url", "driver", "extra"),
    [
        ("redis://127.0.0.1:6379/0", "redis", "redis"),
        ("amqp://guest:guest@127.0.0.1:5672/", "aio_pika", "rabbitmq"),
        ("nats://127.0.0.1:4222", "nats", "nats"),
        ("kafka://127.0.0.1:9092", "aiokafka", "kafka"),
    ],
)
def test_a_missing_driver_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, url: str, driver: str, extra: str
) -> None:
    backend_module = {
        "redis": "redis",
        "aio_pika": "rabbitmq",
        "nats": "nats",
        "aiokafka": "kafka",
    }[driver]
    monkeypatch.delitem(sys.modules, f"magicflow.brokers.{backend_module}", raising=False)
    monkeypatch.setitem(sys.modules, driver, None)  # an import of it fails
    with pytest.raises(ConfigurationError, match=rf"pip install 'magicflow\[{extra}\]'"):
        broker_from_url(url)


def test_bad_options_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="visibility_timeout"):
        broker_from_url("redis://127.0.0.1:6379/0?visibility_timeout=soon")
    with pytest.raises(ConfigurationError, match="unknown URL option"):
        broker_from_url("nats://127.0.0.1:4222?colour=blue")
    with pytest.raises(ConfigurationError, match="partitions must be an integer"):
        broker_from_url("kafka://127.0.0.1:9092?partitions=many")
    with pytest.raises(ConfigurationError, match="session_timeout must be positive"):
        broker_from_url("kafka://127.0.0.1:9092?session_timeout=0")
    with pytest.raises(ConfigurationError, match="no server"):
        broker_from_url("kafka://?partitions=3")


async def test_namespaces_do_not_share_queues(backend: str, queue: str, url: str) -> None:
    """Two deployments on one server, each with a namespace: neither sees the other's
    messages, the results queue included."""
    if backend == "memory":
        pytest.skip("one process: nothing to share")
    a, b = (broker_from_url(with_options(url, f"namespace={queue}-{s}")) for s in "ab")
    await a.connect()
    await b.connect()
    try:
        await a.publish(RESULTS_QUEUE, bodies(3))
        assert await b.receive(RESULTS_QUEUE, 10, 0.3) == []
        got = await take(a, RESULTS_QUEUE, 3)
        assert [d.body for d in got] == bodies(3)
        await a.ack(got)
    finally:
        for broker in (a, b):
            await broker.delete_queue(RESULTS_QUEUE)  # type: ignore[attr-defined]
            await broker.close()


def test_a_namespace_keeps_the_other_options() -> None:
    broker = broker_from_url("redis://127.0.0.1:6379/0?namespace=x&visibility_timeout=7")
    assert isinstance(broker, NamespacedBroker)
    assert broker.visibility_timeout == 7.0
    assert broker.name("default") == "x.default"


def test_a_namespace_must_be_a_plain_word() -> None:
    with pytest.raises(ConfigurationError, match="invalid broker namespace"):
        broker_from_url("redis://127.0.0.1:6379/0?namespace=a.b")
    with pytest.raises(ConfigurationError, match="invalid broker namespace"):
        broker_from_url("memory://?namespace=")


async def test_receive_any_reads_several_queues_at_once(make: Factory, queue: str) -> None:
    broker = await make()
    if not receives_any(broker):
        pytest.skip("this backend reads one queue at a time (receive_any is optional)")
    many = cast(MultiReceive, broker)
    other = f"{queue}.other"
    try:
        await broker.publish(queue, bodies(2))
        await broker.publish(other, [b"elsewhere"])
        got: list[Delivery] = []
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            got += await many.receive_any([queue, other], 10, 0.5)
        assert sorted((d.queue, d.body) for d in got) == [
            (queue, b"message-0"),
            (queue, b"message-1"),
            (other, b"elsewhere"),
        ]
        await broker.ack(got)
        assert await many.receive_any([queue, other], 10, 0.2) == []  # acked: gone
    finally:
        await broker.delete_queue(other)  # type: ignore[attr-defined]

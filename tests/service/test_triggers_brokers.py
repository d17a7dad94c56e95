"""Triggers and event streams against the real Redis, RabbitMQ, NATS and Kafka-protocol
(Tansu) servers: two service instances consuming one queue start exactly one execution per
message (messages sent twice included) and dead-letter the bad ones on the broker with the
reason; two instances sending lifecycle events to a queue publish each one once. On Kafka, a
trigger takes its idempotency key from the record key.

Server URLs as in the broker contract suite (``MAGICFLOW_TEST_*_URL``, loopback defaults;
Kafka: ``tests/tansu.py``); each test uses queues of its own and removes them afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from magicflow.brokers import Broker, broker_from_url
from magicflow.service import Engine
from magicflow.service.broker_pool import BrokerPool
from magicflow.service.deliveries import Deliverer
from magicflow.service.triggers import Triggers
from magicflow.stores.base import EventStreamRecord, TriggerRecord

from ..tansu import kafka_url
from .conftest import GREET

__all__ = ["kafka_url"]  # a fixture
pytestmark = pytest.mark.services

URLS = {
    "redis": os.environ.get("MAGICFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "rabbitmq": os.environ.get("MAGICFLOW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    "nats": os.environ.get("MAGICFLOW_TEST_NATS_URL", "nats://127.0.0.1:4222"),
}
KINDS = ["execution.started", "step.started", "step.completed", "execution.completed"]


@pytest.fixture(params=[*sorted(URLS), "kafka"])
async def target(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str, Broker]]:
    """(broker URL, a queue of this test's own, a connected client of that broker)."""
    if request.param == "kafka":
        url = str(request.getfixturevalue("kafka_url"))
    else:
        url = URLS[request.param]
    queue = f"trig-{uuid.uuid4().hex[:10]}"
    client = broker_from_url(url)
    await client.connect()
    try:
        yield url, queue, client
    finally:
        await client.delete_queue(queue)  # type: ignore[attr-defined]
        await client.close()


@pytest.fixture
async def greet(engine: Engine, tmp_path: Any) -> None:
    path = tmp_path / "greet.yaml"
    path.write_text(GREET)
    await engine.register_file(path)


async def count_started(engine: Engine, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(20):
        while True:
            page = await engine.list_executions(workflow="greet", limit=200)
            if len(page["items"]) >= count:
                return list(page["items"])
            await asyncio.sleep(0.02)


async def test_two_instances_start_one_execution_per_message(
    engine: Engine, greet: None, target: tuple[str, str, Broker]
) -> None:
    url, queue, client = target
    await engine.store.save_trigger(
        TriggerRecord("tr_1", "greet", queue, "message.id", 1.0, "message.who", broker=url)
    )
    messages = [json.dumps({"id": n, "who": {"name": f"n{n}"}}).encode() for n in range(20)]
    await client.publish(queue, messages + messages[:10])  # ten of them twice
    await client.publish(queue, [b"not json", b'{"id": 99, "who": {}}'])
    async with AsyncExitStack() as stack:
        for _ in range(2):  # two service instances: a broker connection each
            pool = BrokerPool(engine.broker)
            stack.push_async_callback(pool.close)
            triggers = Triggers(engine, pool, poll=0.1, wait=0.2)
            await stack.enter_async_context(triggers)
            await triggers.refresh()
        documents = await count_started(engine, 20)
        async with asyncio.timeout(20):
            while len(await client.dead_letters(queue)) < 2:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.05)
    assert sorted(d["input"]["name"] for d in documents) == sorted(f"n{n}" for n in range(20))
    assert len((await engine.list_executions(workflow="greet", limit=200))["items"]) == 20
    reasons = sorted(reason for _, reason in await client.dead_letters(queue))
    assert reasons[0] == "greet@1.0.0: input: 'name' is a required property"
    assert reasons[1].startswith("the message is not JSON: ")
    assert await client.receive(queue, 10, 0.5) == []  # everything was acknowledged


async def test_lifecycle_events_are_published_once_by_two_instances(
    engine: Engine, greet: None, target: tuple[str, str, Broker]
) -> None:
    url, queue, client = target
    await engine.store.save_event_stream(EventStreamRecord("es_1", queue, ("*",), 1.0, broker=url))
    async with AsyncExitStack() as stack:
        deliverers = []
        for _ in range(2):  # two service instances sending from one store
            pool = BrokerPool(engine.broker)
            stack.push_async_callback(pool.close)
            deliverers.append(
                await stack.enter_async_context(Deliverer(engine.store, pool, poll=0.02))
            )
        engine.driver.set_deliveries(deliverers[0].deliveries_for)  # the instance running them
        engine.driver.add_listener(deliverers[0].notify)
        runs = [await engine.start("greet", {"name": f"n{n}"}) for n in range(5)]
        for execution_id in runs:
            await engine.wait(execution_id, timeout=10)
        received: list[dict[str, Any]] = []
        async with asyncio.timeout(20):
            while len(received) < len(KINDS) * len(runs):
                got = await client.receive(queue, 100, 0.2)
                received += [json.loads(d.body) for d in got]
                await client.ack(got)
    assert await client.receive(queue, 100, 0.5) == []
    assert len({m["id"] for m in received}) == len(received)  # none published twice
    for execution_id in runs:  # (in order from one instance; two may publish batches at once)
        mine = [m["event"] for m in received if m["execution_id"] == execution_id]
        assert sorted(mine) == sorted(KINDS)
    log = await engine.store.list_deliveries("es_1", 100)
    assert {d.status for d in log} == {"delivered"}


@pytest.mark.parametrize("target", ["kafka"], indirect=True)
async def test_a_kafka_trigger_takes_its_idempotency_key_from_the_record_key(
    engine: Engine, greet: None, target: tuple[str, str, Broker]
) -> None:
    from aiokafka import AIOKafkaProducer

    url, queue, client = target
    await client.publish(queue, [])  # creates the topic
    producer = AIOKafkaProducer(bootstrap_servers=url.removeprefix("kafka://").split("?")[0])
    await producer.start()
    try:
        topic = f"magicflow.q.{queue}"
        for key, name in ((b"order-1", "a"), (b"order-1", "again"), (b"order-2", "b"), (None, "x")):
            value = json.dumps({"name": name}).encode()
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()
    await engine.store.save_trigger(TriggerRecord("tr_k", "greet", queue, "key", 1.0, broker=url))
    pool = BrokerPool(engine.broker)
    try:
        async with Triggers(engine, pool, poll=0.1, wait=0.2) as triggers:
            await triggers.refresh()
            documents = await count_started(engine, 2)
            async with asyncio.timeout(20):
                while not await client.dead_letters(queue):  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.05)
    finally:
        await pool.close()
    assert sorted(d["input"]["name"] for d in documents) == ["a", "b"]
    assert await engine.store.find_idempotent("greet", "trigger:tr_k:order-1") is not None
    assert await engine.store.find_idempotent("greet", "trigger:tr_k:order-2") is not None
    ((body, reason),) = await client.dead_letters(queue)
    assert (json.loads(body), reason) == ({"name": "x"}, "the message has no key")


async def test_a_deleted_trigger_hands_back_what_rabbitmq_delivered_ahead(
    engine: Engine, greet: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, queue = URLS["rabbitmq"], f"trig-{uuid.uuid4().hex[:10]}"
    client = broker_from_url(url)
    await client.connect()
    entered, release = asyncio.Event(), asyncio.Event()
    start = engine.start

    async def held_start(*args: Any, **kwargs: Any) -> str:
        entered.set()
        await release.wait()
        return await start(*args, **kwargs)

    monkeypatch.setattr(engine, "start", held_start)
    pool = BrokerPool(engine.broker)
    try:
        await client.publish(queue, [json.dumps({"name": f"n{n}"}).encode() for n in range(5)])
        await engine.store.save_trigger(
            TriggerRecord("tr_r", "greet", queue, "message.name", 1.0, broker=url)
        )
        async with Triggers(engine, pool, wait=0.2, batch=1) as triggers:
            await triggers.refresh()
            await asyncio.wait_for(entered.wait(), 20)  # one message taken, the rest prefetched
            await engine.store.delete_trigger("tr_r")
            stopping = asyncio.create_task(triggers.refresh())
            release.set()
            await stopping
            assert triggers.running == []
            rest: list[bytes] = []
            async with asyncio.timeout(10):  # while this process stays connected
                while len(rest) < 4:
                    got = await client.receive(queue, 10, 0.2)
                    rest += [d.body for d in got]
                    await client.ack(got)
        assert sorted(json.loads(b)["name"] for b in rest) == ["n1", "n2", "n3", "n4"]
        assert len((await engine.list_executions(workflow="greet"))["items"]) == 1
    finally:
        await pool.close()
        await client.delete_queue(queue)  # type: ignore[attr-defined]
        await client.close()

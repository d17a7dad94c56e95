"""The Kafka broker when things die, against real Tansu servers of the test's own.

- A consumer process SIGKILLed while it holds messages it has not acknowledged: another member
  of the group gets every one of them once the group notices (no heartbeat for the session
  timeout) and hands the dead member's partitions over; nothing is lost.
- The server SIGKILLed and started again on the same port, its data kept in S3 storage (moto's
  S3 server, which outlives it): every message published before and after is consumed, the
  committed offsets are kept (what was acknowledged before is not delivered again), and the
  producer reconnects by itself; nothing is lost.

Both report the duplicates they saw (at-least-once allows them; their number is worth knowing).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from magicflow.brokers import Broker, broker_from_url
from magicflow.errors import BrokerError

from ..tansu import S3Store, Tansu, with_options

pytestmark = [pytest.mark.slow, pytest.mark.services]

OPTIONS = "session_timeout=2&partitions=4"
COUNT = 200

CONSUMER = """\
import asyncio, json, sys
from magicflow.brokers import broker_from_url

async def main(url, queue, count):
    broker = broker_from_url(url)
    await broker.connect()
    got = []
    while len(got) < count:
        got += await broker.receive(queue, count - len(got), 1.0)
    acked = [d for d in got if json.loads(d.body)["n"] % 3 == 0]
    await broker.ack(acked)
    await asyncio.sleep(0.5)  # the commit goes out
    print(json.dumps({"acked": [json.loads(d.body)["n"] for d in acked]}), flush=True)
    await asyncio.sleep(3600)  # holding the rest until killed

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def bodies(start: int, stop: int) -> list[bytes]:
    """Task-like bodies: keyed by execution, so they spread over the partitions."""
    return [
        json.dumps({"execution_id": f"exec-{n % 23}", "n": n}).encode() for n in range(start, stop)
    ]


def numbers(raw: list[bytes]) -> list[int]:
    return [int(json.loads(body)["n"]) for body in raw]


async def connected(url: str) -> Broker:
    broker = broker_from_url(url)
    await broker.connect()
    return broker


async def drain(broker: Broker, queue: str, expected: set[int], within: float) -> list[int]:
    """Receive and acknowledge until every expected number came (or ``within`` seconds)."""
    seen: list[int] = []
    deadline = time.monotonic() + within
    while not expected <= set(seen) and time.monotonic() < deadline:
        try:
            got = await broker.receive(queue, 100, 0.5)
            await broker.ack(got)
        except BrokerError:  # the server is down: the client reconnects
            await asyncio.sleep(0.2)
            continue
        seen += numbers([d.body for d in got])
    return seen


def report(name: str, seen: list[int], expected: set[int], took: float) -> None:
    duplicates = len(seen) - len(set(seen))
    lost = len(expected - set(seen))
    print(f"{name}: {len(expected)} expected, lost {lost}, duplicates {duplicates}, {took:.1f} s")


@pytest.fixture
def tansu(tmp_path: Path) -> Iterator[Tansu]:
    server = Tansu(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_killed_consumer_s_messages_go_to_another(tansu: Tansu, tmp_path: Path) -> None:
    url = with_options(tansu.url, OPTIONS + "&visibility_timeout=60")
    queue = f"faults-{uuid.uuid4().hex[:8]}"
    producer = await connected(url)
    await producer.publish(queue, bodies(0, COUNT))
    victim = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CONSUMER, url, queue, str(COUNT), stdout=asyncio.subprocess.PIPE
    )
    survivor = await connected(url)
    try:
        assert victim.stdout is not None
        line = await asyncio.wait_for(victim.stdout.readline(), 60)
        acked = set(json.loads(line)["acked"])
        assert 0 < len(acked) < COUNT
        await survivor.receive(queue, 1, 0.1)  # a member of the group before the kill
        victim.kill()
        await victim.wait()
        started = time.monotonic()
        held = set(range(COUNT)) - acked
        seen = await drain(survivor, queue, held, within=60)
        report("consumer SIGKILL", seen, held, time.monotonic() - started)
        assert held <= set(seen), f"lost: {sorted(held - set(seen))}"
    finally:
        if victim.returncode is None:
            victim.kill()
            await victim.wait()
        await survivor.close()
        await producer.close()


async def test_a_restarted_server_loses_nothing(tmp_path: Path) -> None:
    store = S3Store(tmp_path)
    server = Tansu(tmp_path)
    try:
        server.start(storage=store.url, env=store.env)
        url = with_options(server.url, OPTIONS + "&visibility_timeout=5")
        queue = f"faults-{uuid.uuid4().hex[:8]}"
        producer, consumer = await connected(url), await connected(url)
        try:
            await producer.publish(queue, bodies(0, COUNT))
            first: list[int] = []
            while len(first) < COUNT // 2:  # half of them acknowledged, the rest left
                got = await consumer.receive(queue, COUNT // 2 - len(first), 1.0)
                await consumer.ack(got)
                first += numbers([d.body for d in got])
            # a client prefetches: close it, so what it did not take must come from the server
            await consumer.close()
            started = time.monotonic()
            server.kill()
            await asyncio.sleep(1.0)  # down for a second
            server.start(storage=store.url, env=store.env)
            later = bodies(COUNT, 2 * COUNT)
            deadline = time.monotonic() + 30
            while True:  # the producer reconnects; until then publishing fails
                try:
                    await producer.publish(queue, later)
                    break
                except BrokerError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)
            expected = set(range(2 * COUNT))
            consumer = await connected(url)
            seen = first + await drain(consumer, queue, expected - set(first), within=60)
            report("server restart", seen, expected, time.monotonic() - started)
            assert expected <= set(seen), f"lost: {sorted(expected - set(seen))}"
        finally:
            await producer.close()
            await consumer.close()
    finally:
        server.stop()
        store.stop()

"""Several service instances over one PostgreSQL store and one Redis broker (real servers).

Each instance decides the executions of the partitions it holds a lease on. The tests check
that two instances share the work and never decide the same step twice, that an execution
started on one instance and decided by the other is seen to end by both, and that an
instance killed with SIGKILL hands its executions over: the survivor fires its sleep timers
and applies the results its executors send, and everything finishes exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from magicflow.dsl import compile_workflow
from magicflow.executor import Executor, Registry, StepContext
from magicflow.service import Engine
from magicflow.service.app import create_app
from magicflow.service.settings import ServiceSettings

from ..service_stores import postgresql_url

pytestmark = [pytest.mark.services, pytest.mark.slow]

# A Redis database of their own: other engines on the server don't read these results queues.
BROKER = os.environ.get("MAGICFLOW_TEST_INSTANCES_BROKER", "redis://127.0.0.1:6379/11")
TTL = 2.0  # lease time of the instances under test, seconds


def workflow(queue: str) -> str:
    return f"""
name: relay
version: "1"
steps:
  - id: first
    function: record
    queue: {queue}
  - id: nap
    sleep: 1s
    depends_on: [first]
  - id: last
    function: record
    queue: {queue}
    depends_on: [nap]
"""


class Ledger:
    """Every call of the business function, as (execution id, step id, attempt)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    def record(self, ctx: StepContext) -> dict[str, Any]:
        self.calls.append((ctx.execution_id, ctx.step_id, ctx.attempt))
        return {"step": ctx.step_id}

    def registry(self) -> Registry:
        registry = Registry()
        registry.register("record", self.record)
        return registry


@pytest.fixture
async def store() -> AsyncIterator[str]:
    async with postgresql_url() as url:
        yield url


@pytest.fixture
def queue() -> str:
    return f"instances-{uuid.uuid4().hex[:10]}"


def engine(store: str) -> Engine:
    return Engine(store=store, broker=BROKER, lease_ttl=TTL, shutdown_grace=0.5)


async def settled(*engines: Engine, holding: int = 16) -> None:
    """Wait until the instances hold ``holding`` partitions between them, each a share."""
    for _ in range(200):
        held = [set(e.driver.ownership.held) for e in engines if e.driver.ownership]
        if sum(map(len, held)) == holding and all(held) and len(set().union(*held)) == holding:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the partitions did not settle: {held}")


@asynccontextmanager
async def two_instances(store: str, queue: str) -> AsyncIterator[tuple[Engine, Engine]]:
    """Two instances that share the partitions, the workflow registered."""
    async with engine(store) as a, engine(store) as b:
        await settled(a, b)
        await a.register(compile_workflow(workflow(queue), "relay.yaml"))
        yield a, b


async def test_two_instances_share_the_executions_and_decide_each_step_once(
    store: str, queue: str
) -> None:
    ledger = Ledger()
    async with (
        two_instances(store, queue) as (a, b),
        Executor(b.broker, ledger.registry(), queues=[queue]),
    ):
        ids = [await (a if n % 2 else b).start("relay", {"n": n}) for n in range(40)]
        results = await asyncio.gather(
            *((b if n % 3 else a).wait(eid, timeout=60) for n, eid in enumerate(ids))
        )
    assert [r["status"] for r in results] == ["completed"] * 40
    assert Counter(ledger.calls) == {(eid, s, 1): 1 for eid in ids for s in ("first", "last")}
    assert a.driver.transitions > 0  # both decided a share
    assert b.driver.transitions > 0


async def test_an_event_stream_on_one_instance_follows_what_the_other_decides(
    store: str, queue: str
) -> None:
    ledger = Ledger()
    async with two_instances(store, queue) as (a, b):
        ids = (f"sse-{n}-{uuid.uuid4().hex[:8]}" for n in range(1000))
        theirs = next(eid for eid in ids if a.driver.owns(eid) and not b.driver.owns(eid))
        app = create_app(b, ServiceSettings(auth=False))
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://b") as http,
            Executor(a.broker, ledger.registry(), queues=[queue]),
        ):
            await a.start("relay", {}, execution_id=theirs)
            async with asyncio.timeout(10):  # well under the stream's 15 s heartbeat
                response = await http.get(f"/api/v1/executions/{theirs}/events")
    kinds = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert kinds[0] == "execution.started"
    assert kinds[-2:] == ["execution.completed", "stream.end"]
    assert b.driver.transitions == 0  # b decided nothing: it only read the store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(store: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    environment = {**os.environ, "MAGICFLOW_LEASE_TTL": str(TTL)}
    command = ["server", "--no-auth", "--port", str(port), "--store", store, "--broker", BROKER]
    process = subprocess.Popen(
        [sys.executable, "-m", "magicflow", *command, "--log-level", "warning"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, "the server exited"
        try:
            if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)


async def test_an_instance_killed_hands_its_executions_over(store: str, queue: str) -> None:
    ledger = Ledger()
    server, url = start_server(store)
    try:
        async with engine(store) as survivor:
            await survivor.register(compile_workflow(workflow(queue), "relay.yaml"))
            async with Executor(survivor.broker, ledger.registry(), queues=[queue]):
                async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                    await settled(survivor, holding=8)  # the server holds the other half
                    ids = []
                    for n in range(30):
                        response = await http.post(
                            "/api/v1/workflows/relay/executions", json={"input": {"n": n}}
                        )
                        assert response.status_code == 201, response.text
                        ids.append(response.json()["execution_id"])
                await asyncio.sleep(0.3)  # the first steps run; the naps are under way
                server.send_signal(signal.SIGKILL)
                server.wait()
                killed = time.monotonic()
                results = await asyncio.gather(*(survivor.wait(eid, timeout=60) for eid in ids))
                handover = time.monotonic() - killed
                held = len(survivor.driver.ownership.held) if survivor.driver.ownership else 0
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
    assert [r["status"] for r in results] == ["completed"] * 30
    steps = Counter((eid, step) for eid, step, _ in ledger.calls)
    assert set(steps) == {(eid, s) for eid in ids for s in ("first", "last")}
    assert all(r["steps"][s]["attempts"] == 1 for r in results for s in ("first", "last"))
    assert held == 16  # the survivor took every partition over
    assert handover < 30, handover

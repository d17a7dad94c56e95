"""Event streams through the API, on the service's own (in-process) broker: each lifecycle
event is one message with the JSON a webhook gets, in order; filters by workflow and kind; a
broker that refuses is retried with backoff and the delivery log says why. The real brokers
are in ``test_triggers_brokers.py``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from magicflow.brokers import Broker
from magicflow.service import Engine
from magicflow.service.deliveries import Deliverer

from .conftest import GREET, register, wait_status

KINDS = ["execution.started", "step.started", "step.completed", "execution.completed"]


@pytest.fixture
async def deliverer(app: FastAPI) -> AsyncIterator[Deliverer]:
    running: Deliverer = app.state.deliverer
    running.poll, running.backoff = 0.05, 0.05
    async with running:
        yield running


async def subscribe(admin: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await admin.post("/api/v1/event-streams", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def consume(broker: Broker, queue: str, count: int) -> list[dict[str, Any]]:
    """``count`` messages of ``queue`` (acknowledged), in the order received."""
    bodies: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while len(bodies) < count:
            got = await broker.receive(queue, count - len(bodies), 0.1)
            bodies += [json.loads(d.body) for d in got]
            await broker.ack(got)
    return bodies


async def run_greet(admin: httpx.AsyncClient) -> str:
    started = await admin.post("/api/v1/workflows/greet/executions", json={"input": {"name": "a"}})
    execution_id: str = started.json()["execution_id"]
    await wait_status(admin, execution_id, "completed")
    return execution_id


async def test_each_event_is_one_message_in_order(
    engine: Engine, admin: httpx.AsyncClient, deliverer: Deliverer
) -> None:
    await register(admin, GREET)
    stream = await subscribe(admin, queue="flow.events", events=["*"], workflow="greet")
    assert stream["id"].startswith("es_")
    assert (stream["broker"], stream["workflow"], stream["events"]) == (None, "greet", ["*"])
    execution_id = await run_greet(admin)
    messages = await consume(engine.broker, "flow.events", len(KINDS))
    assert [m["event"] for m in messages] == KINDS
    for message in messages:
        assert message["id"].startswith("dlv_")
        assert message["execution_id"] == execution_id
        assert (message["workflow"], message["version"]) == ("greet", "1.0.0")
        assert message["timestamp"].endswith("Z")
    assert messages[1]["step_id"] == "hello"
    url = f"/api/v1/event-streams/{stream['id']}/deliveries"
    async with asyncio.timeout(10):  # each attempt is recorded just after its publish
        while True:
            log = (await admin.get(url)).json()["items"]
            if {e["status"] for e in log} == {"delivered"}:
                break
            await asyncio.sleep(0.01)
    assert sorted(e["id"] for e in log) == sorted(m["id"] for m in messages)


async def test_only_matching_workflows_and_kinds_are_published(
    engine: Engine, admin: httpx.AsyncClient, deliverer: Deliverer
) -> None:
    await register(admin, GREET)
    await subscribe(admin, queue="other.events", events=["*"], workflow="other")
    await subscribe(admin, queue="ends", events=["execution.completed", "execution.failed"])
    await run_greet(admin)
    (message,) = await consume(engine.broker, "ends", 1)
    assert message["event"] == "execution.completed"
    await asyncio.sleep(0.2)  # what else would have come by now (the sender polls every 0.05 s)
    assert await engine.broker.receive("other.events", 10, 0.0) == []
    assert await engine.broker.receive("ends", 10, 0.0) == []


async def test_a_broker_that_cannot_be_reached_is_retried_and_logged(
    admin: httpx.AsyncClient, deliverer: Deliverer
) -> None:
    deliverer.max_attempts = 2
    await register(admin, GREET)
    stream = await subscribe(
        admin, queue="q", events=["execution.started"], broker="redis://127.0.0.1:1/0"
    )
    await run_greet(admin)
    url = f"/api/v1/event-streams/{stream['id']}/deliveries"
    async with asyncio.timeout(10):
        while True:
            items = (await admin.get(url)).json()["items"]
            if items and items[0]["status"] == "failed":
                break
            await asyncio.sleep(0.02)
    (entry,) = items
    assert (entry["attempts"], entry["last_status"]) == (2, None)
    assert "BrokerError" in entry["last_error"]


async def test_event_streams_are_admin_only_listed_and_deleted(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    stream = await subscribe(
        admin, queue="q", events=["step.failed"], broker="nats://user:pw@127.0.0.1:1"
    )
    assert stream["broker"] == "nats://user:***@127.0.0.1:1"
    assert (await admin.get("/api/v1/event-streams")).json()["items"] == [stream]
    operator = {"Authorization": f"Bearer {keys['operator']}"}
    assert (await anonymous.get("/api/v1/event-streams", headers=operator)).status_code == 403
    assert (await admin.delete(f"/api/v1/event-streams/{stream['id']}")).status_code == 204
    assert (await admin.delete(f"/api/v1/event-streams/{stream['id']}")).status_code == 404
    assert (await admin.get("/api/v1/event-streams/nope/deliveries")).status_code == 404
    assert (await admin.get(f"/api/v1/event-streams/{stream['id']}/deliveries")).status_code == 404
    assert (await admin.get("/api/v1/event-streams")).json()["items"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"queue": "q", "events": []},
        {"queue": "q q", "events": ["*"]},
        {"queue": "q", "events": ["Not An Event"]},
        {"queue": "q", "events": ["*"], "broker": "memory://"},
        {"queue": "default", "events": ["*"]},  # the service's own queues, on its broker
        {"queue": "magicflow.results", "events": ["*"]},
        {"queue": "q", "events": ["*"], "broker": "http://x"},
        {"queue": "q", "events": ["*"], "extra": 1},
    ],
)
async def test_invalid_event_streams_are_refused(
    admin: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    assert (await admin.post("/api/v1/event-streams", json=body)).status_code == 422

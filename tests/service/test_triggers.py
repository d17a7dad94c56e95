"""Event triggers through the API, consuming the service's own (in-process) broker: one
execution per message even when a message comes twice, the idempotency key and input taken
from the message, bad messages dead-lettered with the reason, passing failures retried a
bounded number of times; consumers follow the stored triggers. The real brokers are in
``test_triggers_brokers.py``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from magicflow.errors import StoreError
from magicflow.service import Engine
from magicflow.service.triggers import Triggers
from magicflow.stores.base import TriggerRecord

from .conftest import GREET, register

QUEUE = "orders"


@pytest.fixture
async def greet(admin: httpx.AsyncClient) -> None:
    assert (await register(admin, GREET)).status_code == 201


@pytest.fixture
async def triggers(app: FastAPI) -> AsyncIterator[Triggers]:
    running: Triggers = app.state.triggers
    running.poll, running.wait, running.retry_delay = 0.05, 0.05, 0.0
    async with running:
        yield running


async def create(admin: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"queue": QUEUE, "idempotency_key": "message.order.id"} | body
    response = await admin.post("/api/v1/workflows/greet/triggers", json=values)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def publish(engine: Engine, *messages: Any) -> None:
    bodies = [m if isinstance(m, bytes) else json.dumps(m).encode() for m in messages]
    await engine.broker.publish(QUEUE, bodies)


def order(key: Any, name: str = "ada") -> dict[str, Any]:
    return {"order": {"id": key}, "customer": {"name": name}}


async def started(engine: Engine, count: int) -> list[dict[str, Any]]:
    """The executions of greet once there are ``count`` (10 s at most), as documents."""
    async with asyncio.timeout(10):
        while True:
            page = await engine.list_executions(workflow="greet", limit=100)
            if len(page["items"]) >= count:
                return list(page["items"])
            await asyncio.sleep(0.01)


async def dead_letters(engine: Engine, count: int) -> list[tuple[bytes, str]]:
    async with asyncio.timeout(10):
        while True:
            dead = await engine.broker.dead_letters(QUEUE)
            if len(dead) >= count:
                return dead
            await asyncio.sleep(0.01)


async def test_each_message_starts_one_execution_keyed_by_the_message(
    engine: Engine, admin: httpx.AsyncClient, greet: None, triggers: Triggers
) -> None:
    trigger = await create(admin, input="message.customer")
    await triggers.refresh()
    assert triggers.running == [trigger["id"]]
    await publish(engine, order(7), order(7), order("8", "bob"))
    await publish(engine, order(7))  # delivered again, later
    documents = await started(engine, 2)
    await triggers.__aexit__(None, None, None)  # stops after the batch it handles
    assert await engine.broker.receive(QUEUE, 10, 0.0) == []  # every message acknowledged
    assert len((await engine.list_executions(workflow="greet"))["items"]) == 2
    assert sorted(d["input"]["name"] for d in documents) == ["ada", "bob"]
    for key in ("7", "8"):
        assert await engine.store.find_idempotent("greet", f"trigger:{trigger['id']}:{key}")
    metrics = (await admin.get("/metrics")).text
    assert 'magicflow_trigger_messages_total{outcome="started",workflow="greet"} 4.0' in metrics


async def test_messages_that_cannot_start_go_to_the_dead_letter_queue_with_the_reason(
    engine: Engine, admin: httpx.AsyncClient, greet: None, triggers: Triggers
) -> None:
    await create(admin, input="message.customer")
    await triggers.refresh()
    await publish(
        engine,
        b"{not json",
        {"customer": {"name": "x"}},
        order({"an": "object"}),
        order(1, name=""),  # fine
        {"order": {"id": 2}},
        {"order": {"id": 3}, "customer": {"nom": "x"}},
    )
    dead = await dead_letters(engine, 5)
    reasons = sorted(reason for _, reason in dead)
    assert reasons == [
        "greet@1.0.0: input: 'name' is a required property",
        "the idempotency key (message.order.id) is not a string or an integer",
        "the message has no message.customer",
        "the message has no message.order",
        "the message is not JSON: JSON is malformed: object keys must be strings (byte 1)",
    ]
    assert [d["input"] for d in await started(engine, 1)] == [{"name": ""}]
    metrics = (await admin.get("/metrics")).text
    assert (
        'magicflow_trigger_messages_total{outcome="dead_lettered",workflow="greet"} 5.0' in metrics
    )


async def test_a_start_that_keeps_failing_is_retried_then_dead_lettered(
    engine: Engine,
    admin: httpx.AsyncClient,
    greet: None,
    triggers: Triggers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[str] = []

    async def store_down(workflow: str, *args: Any, **kwargs: Any) -> str:
        attempts.append(workflow)
        raise StoreError("the store does not answer")

    monkeypatch.setattr(engine, "start", store_down)
    triggers.max_deliveries = 3
    await create(admin)
    await triggers.refresh()
    await publish(engine, order(1))
    ((body, reason),) = await dead_letters(engine, 1)
    assert json.loads(body) == order(1)
    assert reason == "not started after 3 deliveries: the store does not answer"
    assert attempts == ["greet"] * 3


async def test_a_consumer_that_cannot_receive_says_why(
    admin: httpx.AsyncClient, greet: None, triggers: Triggers
) -> None:
    made = await create(admin, broker="redis://127.0.0.1:1/0")
    assert made["consuming"] is True
    async with asyncio.timeout(10):
        while True:
            found = (await admin.get(f"/api/v1/triggers/{made['id']}")).json()
            if found["last_error"] is not None:
                break
            await asyncio.sleep(0.02)
    assert found["last_error"].startswith("BrokerError: ")
    assert found["consuming"] is True


async def test_consumers_follow_the_stored_triggers(
    engine: Engine, admin: httpx.AsyncClient, greet: None, triggers: Triggers
) -> None:
    stored = TriggerRecord("tr_stored", "greet", QUEUE, "message.order.id", 1.0, "message.customer")
    await engine.store.save_trigger(stored)  # as at start-up, or through another instance
    await triggers.refresh()  # as the refresh loop does every ``poll`` seconds
    assert triggers.running == ["tr_stored"]
    await publish(engine, order(1))
    await started(engine, 1)
    assert (await admin.delete("/api/v1/triggers/tr_stored")).status_code == 204
    assert triggers.running == []


async def test_triggers_through_the_api(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, keys: dict[str, str], greet: None
) -> None:
    made = await create(
        admin,
        broker="amqp://guest:secret@127.0.0.1:1/",
        version="1.0.0",
        idempotency_key="key",
    )
    assert made["id"].startswith("tr_")
    assert made["broker"] == "amqp://guest:***@127.0.0.1:1/"
    assert (made["workflow"], made["queue"], made["input"]) == ("greet", QUEUE, "message")
    assert (made["version"], made["idempotency_key"]) == ("1.0.0", "key")
    assert (made["consuming"], made["last_error"]) == (False, None)  # not running here
    for role in ("operator", "viewer"):
        headers = {"Authorization": f"Bearer {keys[role]}"}
        for url in ("/api/v1/workflows/greet/triggers", "/api/v1/triggers"):
            assert (await anonymous.get(url, headers=headers)).json()["items"] == [made]
        one = await anonymous.get(f"/api/v1/triggers/{made['id']}", headers=headers)
        assert one.json() == made
        body = {"queue": QUEUE, "idempotency_key": "key"}
        refused = await anonymous.post(
            "/api/v1/workflows/greet/triggers", json=body, headers=headers
        )
        assert refused.status_code == 403
        assert (
            await anonymous.delete(f"/api/v1/triggers/{made['id']}", headers=headers)
        ).status_code == 403
    assert (await admin.get("/api/v1/workflows/other/triggers")).json()["items"] == []
    missing = await admin.post(
        "/api/v1/workflows/other/triggers", json={"queue": QUEUE, "idempotency_key": "key"}
    )
    assert missing.status_code == 404
    assert (await admin.delete(f"/api/v1/triggers/{made['id']}")).status_code == 204
    assert (await admin.delete(f"/api/v1/triggers/{made['id']}")).status_code == 404
    assert (await admin.get(f"/api/v1/triggers/{made['id']}")).status_code == 404
    assert (await admin.get("/api/v1/triggers")).json()["items"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"queue": QUEUE},
        {"queue": "has space", "idempotency_key": "key"},
        {"queue": QUEUE, "idempotency_key": "order.id"},
        {"queue": QUEUE, "idempotency_key": "message."},
        {"queue": QUEUE, "idempotency_key": "key", "input": "key"},
        {"queue": QUEUE, "idempotency_key": "key", "broker": "memory://"},
        {"queue": "default", "idempotency_key": "key"},  # executors' tasks, on its broker
        {"queue": "magicflow.results.3", "idempotency_key": "key"},
        {"queue": QUEUE, "idempotency_key": "key", "broker": "ftp://x"},
        {"queue": QUEUE, "idempotency_key": "key", "extra": 1},
    ],
)
async def test_invalid_triggers_are_refused(
    admin: httpx.AsyncClient, greet: None, body: dict[str, Any]
) -> None:
    response = await admin.post("/api/v1/workflows/greet/triggers", json=body)
    assert response.status_code == 422, response.text


async def test_a_queue_that_steps_use_on_the_services_broker_is_refused(
    admin: httpx.AsyncClient, greet: None
) -> None:
    mailer = GREET.replace("name: greet", "name: mailer").replace(
        "function: hello", "function: hello\n    queue: mail"
    )
    assert (await register(admin, mailer)).status_code == 201
    body = {"queue": "mail", "idempotency_key": "key"}
    refused = await admin.post("/api/v1/workflows/greet/triggers", json=body)
    assert refused.status_code == 422
    assert "carries the service's own messages" in refused.json()["detail"]
    elsewhere = body | {"broker": "redis://127.0.0.1:1/0"}  # another broker: its own queues
    assert (await admin.post("/api/v1/workflows/greet/triggers", json=elsewhere)).status_code == 201

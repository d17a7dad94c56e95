"""Webhooks end to end: subscribe through the API, run executions, and a real HTTP receiver on
127.0.0.1 that checks every signature with a plain HMAC; retries with backoff, a stable
delivery id, the delivery log."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from magicflow.service import Engine
from magicflow.service.deliveries import Deliverer
from magicflow.service.webhooks import sign
from magicflow.stores.base import DeliveryRecord, Transition, WebhookRecord
from magicflow.stores.memory import MemoryStore

from .conftest import GREET, register, wait_status


@dataclass
class Received:
    delivery: str
    event: str
    timestamp: str
    signature: str
    body: bytes

    def json(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)  # answered in turn, then 204
    received: list[Received] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                state.received.append(
                    Received(
                        self.headers["X-MagicFlow-Delivery"],
                        self.headers["X-MagicFlow-Event"],
                        self.headers["X-MagicFlow-Timestamp"],
                        self.headers["X-MagicFlow-Signature"],
                        body,
                    )
                )
                status = state.statuses.pop(0) if state.statuses else 204
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
async def deliverer(app: FastAPI) -> AsyncIterator[Deliverer]:
    running: Deliverer = app.state.deliverer
    running.poll, running.backoff = 0.05, 0.05
    async with running:
        yield running


def verified(secret: str, message: Received) -> bool:
    expected = hmac.new(
        secret.encode(), f"{message.timestamp}.".encode() + message.body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(message.signature, f"sha256={expected}")


async def until(condition: Any, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


async def subscribe(admin: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await admin.post("/api/v1/webhooks", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_deliveries_are_signed_and_carry_the_event(
    admin: httpx.AsyncClient, receiver: Receiver, deliverer: Deliverer
) -> None:
    await register(admin, GREET)
    hook = await subscribe(admin, url=receiver.url, events=["execution.completed"])
    assert hook["secret"].startswith("whsec_")
    started = await admin.post("/api/v1/workflows/greet/executions", json={"input": {"name": "a"}})
    execution_id = started.json()["execution_id"]
    await wait_status(admin, execution_id, "completed")
    await until(lambda: len(receiver.received) == 1)
    (message,) = receiver.received
    assert verified(hook["secret"], message)
    assert not verified("another secret", message)
    body = message.json()
    assert body["id"] == message.delivery
    assert body["event"] == message.event == "execution.completed"
    assert body["execution_id"] == execution_id
    assert (body["workflow"], body["version"]) == ("greet", "1.0.0")
    assert body["timestamp"].endswith("Z")
    assert "data" in body


async def test_a_failing_receiver_is_retried_with_the_same_delivery_id(
    admin: httpx.AsyncClient, receiver: Receiver, deliverer: Deliverer
) -> None:
    await register(admin, GREET)
    receiver.statuses = [500, 503]
    hook = await subscribe(
        admin, url=receiver.url, events=["execution.started"], secret="s" * 20, workflow="greet"
    )
    assert hook["secret"] == "s" * 20
    await admin.post("/api/v1/workflows/greet/executions", json={"input": {"name": "a"}})

    async def log() -> list[dict[str, Any]]:
        response = await admin.get(f"/api/v1/webhooks/{hook['id']}/deliveries")
        assert response.status_code == 200
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async with asyncio.timeout(10):
        while True:
            items = await log()
            if items and items[0]["status"] == "delivered":
                break
            await asyncio.sleep(0.02)
    (entry,) = items
    assert entry["attempts"] == 3
    assert (entry["last_status"], entry["last_error"], entry["next_attempt"]) == (204, None, None)
    assert [m.delivery for m in receiver.received] == [entry["id"]] * 3
    assert all(verified("s" * 20, m) for m in receiver.received)
    assert len({m.body for m in receiver.received}) == 1


async def test_a_receiver_that_never_answers_well_is_given_up(
    admin: httpx.AsyncClient, receiver: Receiver, deliverer: Deliverer
) -> None:
    deliverer.max_attempts = 2
    await register(admin, GREET)
    receiver.statuses = [500] * 5
    hook = await subscribe(admin, url=receiver.url, events=["execution.started"])
    await admin.post("/api/v1/workflows/greet/executions", json={"input": {"name": "a"}})
    url = f"/api/v1/webhooks/{hook['id']}/deliveries"
    async with asyncio.timeout(10):
        while True:
            items = (await admin.get(url)).json()["items"]
            if items and items[0]["status"] == "failed":
                break
            await asyncio.sleep(0.02)
    assert (items[0]["attempts"], items[0]["last_status"]) == (2, 500)
    assert items[0]["last_error"] == "HTTP 500"
    assert len(receiver.received) == 2


async def test_only_matching_workflows_and_events_are_delivered(
    admin: httpx.AsyncClient, receiver: Receiver, deliverer: Deliverer
) -> None:
    await register(admin, GREET)
    await subscribe(admin, url=receiver.url, events=["*"], workflow="other")
    everything = await subscribe(admin, url=receiver.url + "?all", events=["*"])
    started = await admin.post("/api/v1/workflows/greet/executions", json={"input": {"name": "a"}})
    await wait_status(admin, started.json()["execution_id"], "completed")
    kinds = {"execution.started", "step.completed", "execution.completed"}
    await until(lambda: kinds <= {m.event for m in receiver.received})  # sent concurrently
    events = [m.event for m in receiver.received]
    assert len(set(m.delivery for m in receiver.received)) == len(events)
    assert all(verified(everything["secret"], m) for m in receiver.received)


async def test_subscriptions_are_listed_without_secrets_and_deleted(
    admin: httpx.AsyncClient, keys: dict[str, str], anonymous: httpx.AsyncClient
) -> None:
    hook = await subscribe(admin, url="http://127.0.0.1:9/x", events=["step.failed"])
    listed = (await admin.get("/api/v1/webhooks")).json()["items"]
    assert [h["id"] for h in listed] == [hook["id"]]
    assert "secret" not in listed[0]
    operator = {"Authorization": f"Bearer {keys['operator']}"}
    assert (await anonymous.get("/api/v1/webhooks", headers=operator)).status_code == 403
    assert (await anonymous.get("/api/v1/webhooks")).status_code == 401
    assert (await admin.delete(f"/api/v1/webhooks/{hook['id']}")).status_code == 204
    assert (await admin.delete(f"/api/v1/webhooks/{hook['id']}")).status_code == 404
    assert (await admin.get("/api/v1/webhooks/nope/deliveries")).status_code == 404
    assert (await admin.get("/api/v1/webhooks")).json()["items"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://x", "events": ["*"]},
        {"url": "http://x", "events": []},
        {"url": "http://x", "events": ["Not An Event"]},
        {"url": "http://x", "events": ["*"], "secret": "short"},
        {"url": "http://x", "events": ["*"], "extra": 1},
    ],
)
async def test_invalid_subscriptions_are_refused(
    admin: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    assert (await admin.post("/api/v1/webhooks", json=body)).status_code == 422


async def test_pending_deliveries_in_the_store_are_sent_after_a_restart(
    receiver: Receiver,
) -> None:
    store = MemoryStore()  # as a crashed service left it: a commit with a pending delivery
    await store.save_webhook(WebhookRecord("wh_1", receiver.url, "k" * 16, ("*",), 1.0))
    body = b'{"id": "dlv_1"}'
    pending = DeliveryRecord("dlv_1", "wh_1", "execution.completed", body, 1.0, next_attempt=1.0)
    committed = Transition("e_1", 0, b"{}", "wf", "1", "completed", None, 1.0, 1.0)
    committed.deliveries = [pending]
    await store.commit([committed])
    async with Deliverer(store, poll=0.05):
        async with asyncio.timeout(10):
            while True:
                (entry,) = await store.list_deliveries("wh_1")
                if entry.status == "delivered":
                    break
                await asyncio.sleep(0.01)
    (message,) = receiver.received
    assert (message.delivery, message.body, entry.attempts) == ("dlv_1", body, 1)
    assert verified("k" * 16, message)


def test_backoff_doubles_up_to_its_cap_and_signatures_are_plain_hmac() -> None:
    deliverer = Deliverer(store=None, backoff=1.0, max_backoff=5.0)  # type: ignore[arg-type]
    assert [deliverer.retry_delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    expected = hmac.new(b"secret", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign("secret", "1700000000", b"{}") == f"sha256={expected}"


async def test_deliveries_are_committed_with_the_transition_that_emitted_them(
    engine: Engine, admin: httpx.AsyncClient
) -> None:
    """Stored by the commit itself (not after it): a crash right after cannot lose them."""
    await register(admin, GREET)
    hook = await subscribe(admin, url="http://127.0.0.1:9/", events=["execution.started"])
    execution_id = await engine.start("greet", {"name": "a"})  # returns once committed
    (pending,) = await engine.store.list_deliveries(hook["id"])  # nothing has sent it yet
    assert (pending.status, pending.event, pending.attempts) == ("pending", "execution.started", 0)
    assert json.loads(pending.body)["execution_id"] == execution_id

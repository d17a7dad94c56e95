"""``magicflow.Client`` against the real app (an Engine on SQLite): through httpx's ASGI
transport, and through a real HTTP server for the live event stream."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

import magicflow
from magicflow import Client
from magicflow.errors import (
    AuthError,
    ConflictError,
    MagicFlowError,
    NotFoundError,
    WorkflowValidationError,
)
from tests.service.conftest import APPROVAL, BROKEN, GREET


@pytest.fixture
async def client(app: FastAPI, keys: dict[str, str]) -> AsyncIterator[Client]:
    transport = httpx.ASGITransport(app=app)
    async with Client("http://test", api_key=keys["admin"], transport=transport) as made:
        yield made


def client_as(app: FastAPI, key: str | None) -> Client:
    return Client("http://test", api_key=key, transport=httpx.ASGITransport(app=app))


async def test_definitions_round_trip(client: Client) -> None:
    created = await client.register(GREET)
    assert (created["name"], created["version"]) == ("greet", "1.0.0")
    again = await client.register(GREET.encode())
    assert again["digest"] == created["digest"]
    as_json = dict(created["document"], version="2.0.0")
    assert (await client.register(as_json))["version"] == "2.0.0"
    (listed,) = await client.list_workflows()
    assert listed["versions"] == ["1.0.0", "2.0.0"]
    assert (await client.get_workflow("greet"))["version"] == "2.0.0"
    assert (await client.get_workflow("greet", "1.0.0"))["source"] == GREET
    assert [v["version"] for v in await client.list_versions("greet")] == ["1.0.0", "2.0.0"]
    assert await client.delete_workflow("greet", "2.0.0") == 1
    assert (await client.get_workflow("greet"))["version"] == "1.0.0"
    assert await client.delete_workflow("greet") == 1
    assert await client.list_workflows() == []
    assert len(await client.list_workflows(include_deleted=True)) == 1


async def test_errors_are_ours(client: Client, app: FastAPI, keys: dict[str, str]) -> None:
    with pytest.raises(NotFoundError, match="not registered"):
        await client.get_workflow("nope")
    with pytest.raises(NotFoundError):
        await client.get("01NOSUCHEXECUTION")
    await client.register(GREET)
    with pytest.raises(ConflictError):
        await client.register(GREET.replace("Say hello", "Say hi"))
    with pytest.raises(WorkflowValidationError) as invalid:
        await client.register("name: x\nversion: '1'\nsteps: []\n")
    assert invalid.value.diagnostics
    assert invalid.value.diagnostics[0].file == "<request>"
    with pytest.raises(WorkflowValidationError) as bad_input:
        await client.start("greet", {"name": 3})
    assert "name" in bad_input.value.diagnostics[0].message
    async with client_as(app, None) as anonymous:
        with pytest.raises(AuthError) as unauthorized:
            await anonymous.list_workflows()
        assert unauthorized.value.status_code == 401
        assert await anonymous.live()
    async with client_as(app, keys["viewer"]) as viewer:
        with pytest.raises(AuthError) as forbidden:
            await viewer.start("greet", {"name": "x"})
        assert forbidden.value.status_code == 403
    async with Client("http://127.0.0.1:1", timeout=2) as nowhere:
        with pytest.raises(MagicFlowError, match="cannot reach"):
            await nowhere.get("x")
        assert not await nowhere.live()


async def test_start_wait_and_idempotency(client: Client) -> None:
    await client.register(GREET)
    first = await client.start("greet", {"name": "ann"}, idempotency_key="k1")
    assert await client.start("greet", {"name": "ann"}, idempotency_key="k1") == first
    result = await client.wait(first, timeout=10)
    assert result["status"] == "completed"
    assert result["output"] == {"hello": {"greeting": "hello ann"}}
    ran = await client.run("greet", {"name": "bob"}, version="1.0.0", timeout=10)
    assert ran["steps"]["hello"]["status"] == "completed"
    await client.register(BROKEN)
    failed = await client.run("broken", timeout=10)
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "NonRetryableError"


async def test_control_signal_and_events(client: Client) -> None:
    await client.register(APPROVAL)
    execution_id = await client.start("approval")
    await client.pause(execution_id)
    await client.resume(execution_id)
    with pytest.raises(ConflictError):
        await client.resume(execution_id)
    await client.signal(execution_id, "approve", {"by": "eve"})
    result = await client.wait(execution_id, timeout=10)
    assert result["status"] == "completed"
    events = [event async for event in client.events(execution_id)]
    kinds = [event["kind"] for event in events]
    assert kinds[0] == "execution.started"
    assert kinds[-2:] == ["execution.completed", "stream.end"]
    assert events[-1]["status"] == "completed"
    last = events[-2]["version"]
    later = [e["kind"] async for e in client.events(execution_id, after=last - 1)]
    assert later == [e["kind"] for e in events if e.get("version", last) >= last]

    cancelled = await client.start("approval")
    await client.cancel(cancelled, reason="changed my mind")
    assert (await client.wait(cancelled, timeout=10))["status"] == "cancelled"
    await client.retry(cancelled)
    await client.signal(cancelled, "approve", {"by": "ann"})
    assert (await client.wait(cancelled, timeout=10))["status"] == "completed"


async def test_listing_iterates_every_page(client: Client) -> None:
    await client.register(GREET)
    ids = [await client.start("greet", {"name": str(i)}) for i in range(7)]
    for execution_id in ids:
        await client.wait(execution_id, timeout=10)
    page = await client.list_executions(workflow="greet", limit=3)
    assert len(page["items"]) == 3
    assert page["next_cursor"]
    seen = [e["execution_id"] async for e in client.iter_executions(workflow="greet", page_size=3)]
    assert seen == list(reversed(ids))
    done = [e async for e in client.iter_executions(status="completed")]
    assert len(done) == 7


async def test_health_and_metrics(client: Client) -> None:
    health = await client.health()
    assert health["status"] == "healthy"
    assert await client.ready()
    assert await client.live()
    assert "magicflow_executions_started_total" in await client.metrics()


def test_the_client_is_exported_lazily() -> None:
    assert magicflow.Client is Client
    assert magicflow.SyncClient.__name__ == "SyncClient"


@pytest.fixture
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app behind a real uvicorn server on a free loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning", log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        app.state.service.hub.close()
        server.should_exit = True
        await task
        sock.close()


async def test_events_arrive_live_over_a_real_connection(served: str, keys: dict[str, str]) -> None:
    async with Client(served, api_key=keys["admin"]) as client:
        await client.register(APPROVAL)
        execution_id = await client.start("approval")
        stream = client.events(execution_id)
        first = await anext(stream)
        assert first["kind"] == "execution.started"  # before the execution has ended
        waiting = asyncio.create_task(client.wait(execution_id, timeout=10))
        await client.signal(execution_id, "approve", {"by": "eve"})
        assert (await waiting)["status"] == "completed"
        rest = [event["kind"] async for event in stream]
        assert rest[-1] == "stream.end"


async def test_triggers_and_event_streams(client: Client) -> None:
    await client.register(GREET)
    trigger = await client.create_trigger(
        "greet", "orders", idempotency_key="message.id", input="message.who", version="1.0.0"
    )
    assert (trigger["queue"], trigger["input"], trigger["version"]) == (
        "orders",
        "message.who",
        "1.0.0",
    )
    assert await client.list_triggers() == await client.list_triggers("greet") == [trigger]
    assert await client.get_trigger(trigger["id"]) == trigger
    await client.delete_trigger(trigger["id"])
    with pytest.raises(NotFoundError):
        await client.get_trigger(trigger["id"])
    with pytest.raises(WorkflowValidationError):
        await client.create_trigger("greet", "default", idempotency_key="key")
    stream = await client.create_event_stream(
        "flow.events", ["execution.completed"], workflow="greet"
    )
    assert (stream["events"], stream["workflow"], stream["broker"]) == (
        ["execution.completed"],
        "greet",
        None,
    )
    assert await client.list_event_streams() == [stream]
    await client.run("greet", {"name": "a"}, timeout=10)
    assert await client.event_stream_deliveries(stream["id"]) != []  # committed with the end
    await client.delete_event_stream(stream["id"])
    assert await client.list_event_streams() == []


async def test_webhooks_and_schedules(client: Client) -> None:
    await client.register(GREET)
    hook = await client.create_webhook("http://127.0.0.1:9/", ["step.failed"], secret="s" * 16)
    assert hook["secret"] == "s" * 16
    assert [h["id"] for h in await client.list_webhooks()] == [hook["id"]]
    assert await client.webhook_deliveries(hook["id"]) == []
    await client.delete_webhook(hook["id"])
    with pytest.raises(NotFoundError):
        await client.delete_webhook(hook["id"])
    schedule = await client.create_schedule("greet", "0 3 * * *", {"name": "n"}, missed="run_once")
    assert (schedule["input"], schedule["missed"]) == ({"name": "n"}, "run_once")
    assert await client.list_schedules("greet") == [schedule]
    await client.delete_schedule("greet", schedule["id"])
    assert await client.list_schedules("greet") == []

"""Server-sent events: every state change of an execution, in order, replayed then live."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from fastapi import FastAPI

from magicflow.service import Engine
from tests.service.conftest import APPROVAL, register, wait_status


def parse(text: str) -> list[dict[str, Any]]:
    """The events of an SSE body: ``{"id": ..., "event": ..., "data": ...}`` (comments out)."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":") or not line:
                continue
            name, _, value = line.partition(": ")
            fields[name] = json.loads(value) if name == "data" else value
        if fields:
            events.append(fields)
    return events


async def stored(engine: Engine, execution_id: str) -> list[tuple[int, str, str | None]]:
    records = await engine.store.read_events(execution_id, limit=1000)
    return [
        (record.version, emit["kind"], emit.get("step_id"))
        for record in records
        for emit in json.loads(record.body)
    ]


async def wait_watched(app: FastAPI, execution_id: str) -> None:
    async with asyncio.timeout(5):
        while not app.state.service.hub.watching(execution_id):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_stream_delivers_every_state_change_in_order_then_ends(
    admin: httpx.AsyncClient, app: FastAPI, engine: Engine
) -> None:
    await register(admin, APPROVAL)
    start = await admin.post("/api/v1/workflows/approval/executions", json={})
    execution_id = start.json()["execution_id"]
    base = f"/api/v1/executions/{execution_id}"
    await wait_status(admin, execution_id, "running")
    watching = asyncio.create_task(admin.get(f"{base}/events"))
    await wait_watched(app, execution_id)
    await admin.post(f"{base}/pause")
    await wait_status(admin, execution_id, "paused")
    await admin.post(f"{base}/resume")
    await admin.post(f"{base}/signals/approve", json={"payload": {"by": "eve"}})
    response = await watching
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse(response.text)
    assert events[-1]["event"] == "stream.end"
    assert events[-1]["data"] == {"execution_id": execution_id, "status": "completed"}
    sent = [(e["data"]["version"], e["event"], e["data"]["step_id"]) for e in events[:-1]]
    assert sent == await stored(engine, execution_id)
    kinds = [kind for _, kind, _ in sent]
    assert kinds[0] == "execution.started"
    assert kinds[-1] == "execution.completed"
    for kind in ("execution.paused", "execution.resumed", "step.completed"):
        assert kind in kinds
    assert kinds.index("execution.paused") < kinds.index("execution.resumed")
    versions = [version for version, _, _ in sent]
    assert versions == sorted(versions)
    ids = [int(e["id"]) for e in events if "id" in e]
    assert ids == sorted(set(versions))  # one id per transition: its version
    for event in events[:-1]:
        assert event["data"]["execution_id"] == execution_id
        assert event["data"]["at"].endswith("Z")


async def test_an_ended_execution_is_replayed_and_resumes_after_last_event_id(
    admin: httpx.AsyncClient, engine: Engine
) -> None:
    await register(admin, APPROVAL)
    start = await admin.post("/api/v1/workflows/approval/executions", json={})
    execution_id = start.json()["execution_id"]
    await wait_status(admin, execution_id, "running")
    await admin.post(f"/api/v1/executions/{execution_id}/cancel")
    await wait_status(admin, execution_id, "cancelled")
    everything = parse((await admin.get(f"/api/v1/executions/{execution_id}/events")).text)
    assert [e["event"] for e in everything][-2:] == ["execution.cancelled", "stream.end"]
    assert len(everything) - 1 == len(await stored(engine, execution_id))
    first_id = next(e["id"] for e in everything if "id" in e)
    rest = await admin.get(
        f"/api/v1/executions/{execution_id}/events", headers={"Last-Event-ID": first_id}
    )
    later = parse(rest.text)
    assert [e["data"]["version"] for e in later[:-1]] == [
        e["data"]["version"] for e in everything[:-1] if e["data"]["version"] > int(first_id)
    ]
    after = parse((await admin.get(f"/api/v1/executions/{execution_id}/events?after=999")).text)
    assert [e["event"] for e in after] == ["stream.end"]


async def test_streams_end_when_the_server_shuts_down(
    admin: httpx.AsyncClient, app: FastAPI
) -> None:
    await register(admin, APPROVAL)
    start = await admin.post("/api/v1/workflows/approval/executions", json={})
    execution_id = start.json()["execution_id"]
    watching = asyncio.create_task(admin.get(f"/api/v1/executions/{execution_id}/events"))
    await wait_watched(app, execution_id)
    await asyncio.sleep(0.5)  # a heartbeat or two while nothing happens
    app.state.service.hub.close()
    response = await watching
    events = parse(response.text)
    assert events[0]["event"] == "execution.started"
    assert "stream.end" not in [e["event"] for e in events]
    assert ": keep-alive" in response.text
    assert app.state.service.hub.watching(execution_id) == 0


async def test_a_resume_point_beyond_any_version_is_refused_or_ends_at_once(
    admin: httpx.AsyncClient,
) -> None:
    await register(admin, APPROVAL)
    start = await admin.post("/api/v1/workflows/approval/executions", json={})
    execution_id = start.json()["execution_id"]
    await admin.post(f"/api/v1/executions/{execution_id}/cancel")
    await wait_status(admin, execution_id, "cancelled")
    base = f"/api/v1/executions/{execution_id}/events"
    assert (await admin.get(f"{base}?after={2**63}")).status_code == 422
    for last_event_id in (b"9" * 30, "²".encode("latin-1"), b" 7 "):
        response = await admin.get(base, headers=[(b"Last-Event-ID", last_event_id)])
        assert response.status_code == 200
        assert parse(response.text)[-1]["event"] == "stream.end"

"""``magicflow.SyncClient`` against a real ``magic-flow server`` process (auth on, an admin
key made by ``magic-flow keys create``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from magicflow import SyncClient
from magicflow.errors import AuthError, NotFoundError
from tests.e2e.test_cli_server import HANDLERS, WORKFLOW, magic_flow
from tests.e2e.test_cli_server import server as server


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    return tmp_path


@pytest.fixture
def client(server: tuple[object, str], workdir: Path) -> Iterator[SyncClient]:
    made = magic_flow("keys", "create", "--role", "admin", cwd=workdir)
    assert made.returncode == 0, made.stderr
    with SyncClient(server[1], api_key=made.stdout.strip()) as sync:
        yield sync


def test_the_sync_client_drives_a_real_server(
    client: SyncClient, server: tuple[object, str]
) -> None:
    assert client.live()
    assert client.ready()
    assert client.register(WORKFLOW)["name"] == "greet"
    assert [w["name"] for w in client.list_workflows()] == ["greet"]
    execution_id = client.start("greet", {"name": "ann"}, idempotency_key="once")
    assert client.start("greet", {"name": "ann"}, idempotency_key="once") == execution_id
    events = client.events(execution_id)
    assert next(events)["kind"] == "execution.started"
    client.signal(execution_id, "approve", {"ok": True})
    result = client.wait(execution_id, timeout=20)
    assert result["status"] == "completed"
    assert result["steps"]["hello"]["output"] == {"greeting": "hello ann"}
    assert [e["kind"] for e in events][-1] == "stream.end"
    assert [e["execution_id"] for e in client.iter_executions(page_size=1)] == [execution_id]
    assert client.health()["status"] in ("healthy", "unknown")
    assert "magicflow_executions_finished_total" in client.metrics()
    trigger = client.create_trigger("greet", "orders", idempotency_key="message.id")
    assert client.list_triggers("greet") == [client.get_trigger(trigger["id"])]
    client.delete_trigger(trigger["id"])
    stream = client.create_event_stream("flow.events")
    assert client.list_event_streams() == [stream]
    assert client.event_stream_deliveries(stream["id"]) == []
    client.delete_event_stream(stream["id"])
    hook = client.create_webhook("http://127.0.0.1:9/", workflow="greet")
    assert [h["id"] for h in client.list_webhooks()] == [hook["id"]]
    assert client.webhook_deliveries(hook["id"]) == []
    client.delete_webhook(hook["id"])
    schedule = client.create_schedule("greet", "0 3 * * *", {"name": "n"})
    assert client.list_schedules("greet") == [schedule]
    client.delete_schedule("greet", schedule["id"])
    with pytest.raises(NotFoundError):
        client.get("nope")
    with SyncClient(server[1], api_key="mf_wrong") as stranger, pytest.raises(AuthError):
        stranger.list_workflows()

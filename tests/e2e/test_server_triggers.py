"""``magic-flow server`` as a real process, with a trigger and an event stream on a real Redis:
a message written to the queue's stream with plain ``XADD`` (as docs/api.md shows) starts an
execution, and its lifecycle events appear on the event stream's queue, read with ``XRANGE``."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis

from .test_cli_server import magic_flow, server, workdir  # noqa: F401 - fixtures

pytestmark = pytest.mark.services

REDIS = os.environ.get("MAGICFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WORKFLOW = """\
name: greet
version: "1.0.0"
input_schema:
  type: object
  required: [name]
steps:
  - id: hello
    function: hello
"""


def test_a_message_xadded_to_redis_starts_an_execution_whose_events_are_published(
    workdir: Path,  # noqa: F811
    server: tuple[subprocess.Popen[str], str],  # noqa: F811
) -> None:
    _, url = server
    orders, events = f"orders-{uuid.uuid4().hex[:8]}", f"events-{uuid.uuid4().hex[:8]}"
    raw = redis.Redis.from_url(REDIS)
    key = magic_flow("keys", "create", "--role", "admin", cwd=workdir).stdout.strip()
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
            yaml = {"Content-Type": "application/yaml"}
            assert client.post("/api/v1/workflows", content=WORKFLOW, headers=yaml).is_success
            stream = client.post(
                "/api/v1/event-streams",
                json={"queue": events, "events": ["execution.completed"], "broker": REDIS},
            )
            assert stream.status_code == 201, stream.text
            trigger = client.post(
                "/api/v1/workflows/greet/triggers",
                json={
                    "queue": orders,
                    "broker": REDIS,
                    "idempotency_key": "message.order.id",
                    "input": "message.customer",
                },
            )
            assert trigger.status_code == 201, trigger.text
            message = {"order": {"id": 42}, "customer": {"name": "ada"}}
            raw.xadd(f"magicflow:{{{orders}}}:stream", {"b": json.dumps(message)})
            deadline = time.monotonic() + 20
            while not (published := raw.xrange(f"magicflow:{{{events}}}:stream")):
                assert time.monotonic() < deadline, "no event was published"
                time.sleep(0.05)
            ((_, fields),) = published
            event = json.loads(fields[b"b"])  # type: ignore[index]
            document = client.get(f"/api/v1/executions/{event['execution_id']}").json()
        assert (event["event"], event["workflow"]) == ("execution.completed", "greet")
        assert (document["status"], document["input"]) == ("completed", {"name": "ada"})
    finally:
        for name in (orders, events):
            keys = list(raw.scan_iter(match=f"magicflow:{{{name}}}:*"))
            if keys:
                raw.delete(*keys)
        raw.close()

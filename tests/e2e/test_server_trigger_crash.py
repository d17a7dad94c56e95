"""A ``magic-flow server`` consuming a trigger's Redis queue is SIGKILLed in the middle of a
burst and started again on the same store: every message ends as exactly one execution (the
messages it had taken but not acknowledged come back after the visibility timeout and find
the executions their idempotency keys started)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from .test_cli_server import free_port, magic_flow

pytestmark = [pytest.mark.services, pytest.mark.slow]

REDIS = os.environ.get("MAGICFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MESSAGES = 3000
HANDLERS = """\
import magicflow

@magicflow.function
def hello(ctx):
    return {"n": ctx.input["n"]}
"""
WORKFLOW = """\
name: count
version: "1.0.0"
steps:
  - id: hello
    function: hello
"""


@contextmanager
def serving(workdir: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "magicflow", "server", "--port", str(port)]
    with (workdir / "server.log").open("ab") as log:
        process = subprocess.Popen(
            [*command, "--handlers", "handlers.py", "--log-level", "warning"],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (workdir / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).is_success:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def started(client: httpx.Client) -> float:
    """Messages this server's trigger consumers started (or found started)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('magicflow_trigger_messages_total{outcome="started"'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def executions(client: httpx.Client) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"workflow": "count", "limit": 1000}
        if cursor is not None:
            params["cursor"] = cursor
        page = client.get("/api/v1/executions", params=params).json()
        found += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def test_a_killed_consumer_loses_no_message_and_starts_none_twice(tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    key = magic_flow("keys", "create", "--role", "admin", cwd=tmp_path).stdout.strip()
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    raw = redis.Redis.from_url(REDIS)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with (
            serving(tmp_path, port) as first,
            httpx.Client(base_url=url, headers=headers) as client,
        ):
            yaml = {"Content-Type": "application/yaml"}
            assert client.post("/api/v1/workflows", content=WORKFLOW, headers=yaml).is_success
            made = client.post(
                "/api/v1/workflows/count/triggers",
                json={
                    "queue": queue,
                    "broker": f"{REDIS}?visibility_timeout=2",
                    "idempotency_key": "message.n",
                },
            )
            assert made.status_code == 201, made.text
            stream = f"magicflow:{{{queue}}}:stream"
            for n in range(MESSAGES):
                raw.xadd(stream, {"b": json.dumps({"n": n})})
            deadline = time.monotonic() + 30
            while started(client) < MESSAGES // 6:
                assert time.monotonic() < deadline, "nothing was started"
                time.sleep(0.01)
            first.send_signal(signal.SIGKILL)
            first.wait()
        held = raw.xpending(stream, "magicflow")["pending"]  # taken, not acknowledged
        with serving(tmp_path, port), httpx.Client(base_url=url, headers=headers) as client:
            deadline = time.monotonic() + 60
            while len(found := executions(client)) < MESSAGES:
                assert time.monotonic() < deadline, f"{len(found)} of {MESSAGES} started"
                time.sleep(0.1)
            time.sleep(3)  # what the dead consumer held comes back after 2 s: none starts again
            found = executions(client)
        inputs = sorted(e["input"]["n"] for e in found)  # type: ignore[index]
        assert inputs == list(range(MESSAGES)), held
    finally:
        keys = list(raw.scan_iter(match=f"magicflow:{{{queue}}}:*"))
        if keys:
            raw.delete(*keys)
        raw.close()

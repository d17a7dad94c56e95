"""``magic-flow server`` and ``magic-flow keys`` as an operator runs them: real processes, a
free port, httpx; SIGTERM ends the server cleanly (exit 0) without losing what it accepted."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

HANDLERS = """\
import magicflow

@magicflow.function
def hello(ctx):
    return {"greeting": "hello " + ctx.input["name"]}
"""

WORKFLOW = """\
name: greet
version: "1.0.0"
steps:
  - id: hello
    function: hello
  - id: approve
    wait_for: approve
    depends_on: [hello]
"""


def magic_flow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "magicflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    return tmp_path


@pytest.fixture
def server(workdir: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "magicflow",
            "server",
            "--port",
            str(port),
            "--handlers",
            "handlers.py",
            "--log-level",
            "warning",
        ],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()
            try:
                if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_keys_are_made_listed_and_revoked_in_the_store(workdir: Path) -> None:
    created = magic_flow("keys", "create", "--role", "operator", "--name", "ci", cwd=workdir)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n"
    assert key.startswith("mf_")
    assert (workdir / "magicflow.db").exists()
    listed = magic_flow("keys", "list", "--json", cwd=workdir)
    (record,) = json.loads(listed.stdout)
    assert (record["role"], record["name"], record["revoked"]) == ("operator", "ci", None)
    assert key not in listed.stdout
    assert key not in magic_flow("keys", "list", cwd=workdir).stdout
    assert magic_flow("keys", "revoke", record["id"], cwd=workdir).returncode == 0
    again = magic_flow("keys", "revoke", record["id"], cwd=workdir)
    assert again.returncode == 1
    assert "no active API key" in again.stderr
    (revoked,) = json.loads(magic_flow("keys", "list", "--json", cwd=workdir).stdout)
    assert revoked["revoked"] is not None
    bad = magic_flow("keys", "create", "--role", "root", cwd=workdir)
    assert bad.returncode == 2


def test_the_server_serves_the_api_and_stops_cleanly_on_sigterm(
    workdir: Path, server: tuple[subprocess.Popen[str], str]
) -> None:
    process, url = server
    # a key made while the server runs works on the next request
    key = magic_flow("keys", "create", "--role", "admin", cwd=workdir).stdout.strip()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        assert httpx.get(f"{url}/api/v1/workflows", timeout=5).status_code == 401
        registered = client.post(
            "/api/v1/workflows", content=WORKFLOW, headers={"Content-Type": "application/yaml"}
        )
        assert registered.status_code == 201, registered.text
        started = client.post("/api/v1/workflows/greet/executions", json={"input": {"name": "ada"}})
        execution_id = started.json()["execution_id"]
        deadline = time.monotonic() + 10
        while (
            client.get(f"/api/v1/executions/{execution_id}").json()["steps"]["approve"]["status"]
            != "waiting"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        signalled = client.post(
            f"/api/v1/executions/{execution_id}/signals/approve", json={"payload": "ok"}
        )
        assert signalled.status_code == 202
        with client.stream("GET", f"/api/v1/executions/{execution_id}/events") as stream:
            text = "".join(stream.iter_text())
        assert "event: execution.completed" in text
        document = client.get(f"/api/v1/executions/{execution_id}").json()
        assert document["status"] == "completed"
        assert document["steps"]["hello"]["output"] == {"greeting": "hello ada"}
        assert document["output"] == {"approve": "ok"}
        # an execution still waiting when the server stops is kept
        waiting = client.post(
            "/api/v1/workflows/greet/executions", json={"input": {"name": "bob"}}
        ).json()["execution_id"]
        assert client.get("/health").json()["status"] == "healthy"
    # a client watching the waiting execution does not hold the shutdown up
    watched: list[str] = []
    watcher = threading.Thread(target=_watch, args=(url, key, waiting, watched), daemon=True)
    watcher.start()
    deadline = time.monotonic() + 10
    while not watched:
        assert time.monotonic() < deadline, "the event stream did not start"
        time.sleep(0.05)
    stopping = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert time.monotonic() - stopping < 8, "the open event stream held the shutdown up"
    watcher.join(timeout=10)
    assert "event: execution.started" in "".join(watched)
    assert "Traceback" not in stderr
    # the store kept both executions
    listed = magic_flow("keys", "list", "--json", cwd=workdir)
    assert listed.returncode == 0
    assert _status_of(workdir, waiting) in ("running", "pending")


def _watch(url: str, key: str, execution_id: str, into: list[str]) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    path = f"{url}/api/v1/executions/{execution_id}/events"
    try:
        with httpx.stream("GET", path, headers=headers, timeout=30) as stream:
            for text in stream.iter_text():
                into.append(text)
    except httpx.HTTPError:
        into.append("(connection closed)")


def _status_of(workdir: Path, execution_id: str) -> str:
    import asyncio

    from magicflow.service import Engine

    async def read() -> str:
        async with Engine(store=f"sqlite:///{workdir / 'magicflow.db'}") as engine:
            return str((await engine.get(execution_id))["status"])

    return asyncio.run(read())

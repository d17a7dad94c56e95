"""Schemathesis against the live ``/openapi.json`` of a real ``magic-flow server``, with every
check: no 5xx, no response outside its schema, no undocumented status, auth enforced, ...

It runs the schemathesis command (``python -m schemathesis.cli run``) with an admin key (so
auth hides nothing), a bounded number of examples per operation and a fixed seed, against a
server that has a workflow and executions to find."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli_server import free_port, magic_flow

pytestmark = pytest.mark.slow

HANDLERS = """\
import magicflow

@magicflow.function
def hello(ctx):
    return {"greeting": "hello"}

@magicflow.function
def boom(ctx):
    raise magicflow.NonRetryableError("boom")
"""

WORKFLOWS = [
    """\
name: greet
version: "1.0.0"
steps:
  - id: hello
    function: hello
""",
    """\
name: broken
version: "1.0.0"
steps:
  - id: boom
    function: boom
""",
]
CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = 25


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(url, admin key) of a server with two workflows and a few executions, all ended (the
    event stream of a running one lasts as long as it runs)."""
    (tmp_path / "handlers.py").write_text(HANDLERS)
    made = magic_flow("keys", "create", "--role", "admin", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    port = free_port()
    command = [sys.executable, "-m", "magicflow", "server", "--port", str(port)]
    with (tmp_path / "server.log").open("w") as log:
        process = subprocess.Popen(
            [*command, "--handlers", "handlers.py", "--log-level", "warning"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_live(process, url)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
            for text in WORKFLOWS:
                headers = {"Content-Type": "application/yaml"}
                assert http.post("/api/v1/workflows", content=text, headers=headers).is_success
            for name in ("greet", "greet", "broken"):
                assert http.post(f"/api/v1/workflows/{name}/executions", json={}).is_success
        yield url, key
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_live(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, "the server stopped"
        try:
            if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)


@pytest.mark.timeout(300)
def test_the_live_openapi_document_holds_under_fuzzing(
    live: tuple[str, str], tmp_path: Path
) -> None:
    url, key = live
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(CONFIG),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {key}",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            "20261125",
            "--request-timeout",
            "10",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    log = (tmp_path / "server.log").read_text()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:] + log[-3000:]
    assert "Traceback" not in log, log[-3000:]

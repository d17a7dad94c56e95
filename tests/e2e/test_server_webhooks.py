"""``magic-flow server`` as a real process delivers signed webhooks to a real receiver, and
still stops cleanly on SIGTERM."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from .test_cli_server import magic_flow, server, workdir  # noqa: F401 - fixtures

WORKFLOW = """\
name: greet
version: "1.0.0"
steps:
  - id: hello
    function: hello
"""


def test_the_server_delivers_signed_webhooks(
    workdir: Path,  # noqa: F811
    server: tuple[subprocess.Popen[str], str],  # noqa: F811
) -> None:
    process, url = server
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers.items()), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        key = magic_flow("keys", "create", "--role", "admin", cwd=workdir).stdout.strip()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            yaml = {"Content-Type": "application/yaml"}
            assert client.post("/api/v1/workflows", content=WORKFLOW, headers=yaml).is_success
            hook = client.post(
                "/api/v1/webhooks",
                json={
                    "url": f"http://127.0.0.1:{receiver.server_address[1]}/",
                    "events": ["execution.completed"],
                },
            ).json()
            started = client.post(
                "/api/v1/workflows/greet/executions", json={"input": {"name": "ada"}}
            )
            execution_id = started.json()["execution_id"]
            deadline = time.monotonic() + 20
            while not received:
                assert time.monotonic() < deadline, "no webhook arrived"
                time.sleep(0.05)
    finally:
        receiver.shutdown()
        receiver.server_close()
        thread.join()
    (head, body), *_ = received
    lower = {name.lower(): value for name, value in head.items()}
    digest = hmac.new(
        hook["secret"].encode(),
        lower["x-magicflow-timestamp"].encode() + b"." + body,
        hashlib.sha256,
    ).hexdigest()
    assert lower["x-magicflow-signature"] == f"sha256={digest}"
    assert json.loads(body)["execution_id"] == execution_id
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr

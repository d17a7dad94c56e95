"""Logs and traces of real ``magic-flow`` processes: ``--log-format json`` (and
``MAGICFLOW_LOG_FORMAT``) gives one JSON object per stderr line with the execution's ids, text
stays the default, and with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set the spans reach an OTLP/HTTP
endpoint (a small collector here) in one trace per execution."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from magicflow.brokers import broker_from_url
from magicflow.brokers.base import RESULTS_QUEUE
from magicflow.tracecontext import span_id, trace_id

from .test_cli_server import free_port
from .test_cli_startup import imported_by

REDIS = os.environ.get("MAGICFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

WORKFLOW = """\
name: observed
version: "1"
steps:
  - id: first
    function: chatty
  - id: second
    function: chatty
    depends_on: [first]
"""
HANDLERS = """\
import logging

import magicflow

@magicflow.function
def chatty(ctx):
    logging.getLogger("handlers").warning("hello from %s", ctx.step_id)
    return {"ok": True}
"""


class Collector:
    """An OTLP/HTTP endpoint that keeps the spans it is sent: (name, trace id, span id,
    parent span id, service name)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, int, int, int | None, str]] = []
        received = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    service = next(
                        a.value.string_value
                        for a in resource.resource.attributes
                        if a.key == "service.name"
                    )
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            parent = int.from_bytes(span.parent_span_id) or None
                            received.append(
                                (
                                    span.name,
                                    int.from_bytes(span.trace_id),
                                    int.from_bytes(span.span_id),
                                    parent,
                                    service,
                                )
                            )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def named(self, name: str) -> list[tuple[str, int, int, int | None, str]]:
        return [span for span in self.spans if span[0] == name]


@pytest.fixture
def collector() -> Iterator[Collector]:
    made = Collector()
    yield made
    made.server.shutdown()
    made.server.server_close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "workflow.yaml").write_text(WORKFLOW)
    (tmp_path / "handlers.py").write_text(HANDLERS)
    return tmp_path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MAGICFLOW_"))}
    env.update(extra)
    return env


def _run(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "magicflow", "run", "workflow.yaml"]
    command += ["--handlers", "handlers.py", *args]
    return subprocess.run(
        command, cwd=project, capture_output=True, text=True, timeout=60, env=_env(**env)
    )


def test_run_with_json_logs_and_otlp_traces(project: Path, collector: Collector) -> None:
    done = _run(
        project, "--output", "json", "--log-format", "json",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)  # stdout is the result alone
    execution_id = document["execution_id"]
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    greetings = {line["step_id"]: line for line in lines if line["message"].startswith("hello")}
    assert set(greetings) == {"first", "second"}
    for step, line in greetings.items():
        assert line["message"] == f"hello from {step}"
        assert (line["level"], line["logger"]) == ("WARNING", "handlers")
        assert line["execution_id"] == execution_id
        assert line["attempt"] == 1
        assert line["task_id"].startswith(f"{execution_id}:{step}:")
        assert "time" in line

    # the provider is flushed before the process exits: every span has arrived
    [root] = collector.named("execution observed")
    assert root[1:4] == (trace_id(execution_id), span_id(execution_id), None)
    assert root[4] == "magicflow-run"
    steps = collector.named("step first") + collector.named("step second")
    assert len(steps) == 2
    assert {(s[1], s[3]) for s in steps} == {(trace_id(execution_id), span_id(execution_id))}


def test_run_logs_text_by_default_and_json_from_the_environment(project: Path) -> None:
    text = _run(project, "--output", "json")
    assert text.returncode == 0, text.stderr
    execution_id = json.loads(text.stdout)["execution_id"]
    [line] = [line for line in text.stderr.splitlines() if "hello from first" in line]
    assert " WARNING handlers: hello from first [execution_id=" + execution_id in line
    assert "step_id=first attempt=1" in line

    from_env = _run(project, "--output", "json", MAGICFLOW_LOG_FORMAT="json")
    assert from_env.returncode == 0, from_env.stderr
    assert all(json.loads(line)["message"] for line in from_env.stderr.splitlines())


def test_bad_log_format_and_exporter_are_one_line_errors(project: Path) -> None:
    bad = _run(project, "--log-format", "xml")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "magic-flow: error: log format must be text or json, not 'xml'"
    exporter = _run(project, OTEL_TRACES_EXPORTER="zipkin")
    assert exporter.returncode == 2
    assert "unknown exporter 'zipkin'" in exporter.stderr
    assert len(exporter.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_server_json_logs_and_traces(project: Path, collector: Collector) -> None:
    port = free_port()
    command = [sys.executable, "-m", "magicflow", "server", "--port", str(port), "--no-auth"]
    command += ["--handlers", "handlers.py", "--log-format", "json"]
    env = _env(OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_SERVICE_NAME="flows-api")
    process = subprocess.Popen(
        command, cwd=project, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()
            try:
                created = httpx.post(
                    f"{url}/workflows",
                    content=WORKFLOW,
                    headers={"Content-Type": "application/yaml"},
                    timeout=2,
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
        assert created.status_code == 201, created.text
        started = httpx.post(f"{url}/workflows/observed/executions", json={}, timeout=5)
        execution_id = started.json()["execution_id"]
        while httpx.get(f"{url}/executions/{execution_id}").json()["status"] != "completed":
            assert time.monotonic() < deadline, "the execution did not complete"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines()]  # every line is JSON
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    assert not any("color_message" in line for line in lines)
    [hello] = [line for line in lines if line["message"] == "hello from first"]
    assert hello["execution_id"] == execution_id
    [root] = collector.named("execution observed")
    assert root[1:5] == (trace_id(execution_id), span_id(execution_id), None, "flows-api")
    assert {s[3] for s in collector.named("step second")} == {span_id(execution_id)}


@pytest.mark.services
@pytest.mark.slow
def test_an_executor_process_joins_the_trace_through_redis(
    project: Path, collector: Collector
) -> None:
    """Two processes, two tracer providers: the executor's attempt spans find the execution's
    span (made by `run`) through the task messages alone; the executor logs JSON."""
    namespace = f"otel-{uuid.uuid4().hex[:10]}"
    broker = f"{REDIS}?namespace={namespace}"
    env = _env(OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_BSP_SCHEDULE_DELAY="100")
    executor = subprocess.Popen(
        [sys.executable, "-m", "magicflow", "executor", "--handlers", "handlers.py",
         "--broker", broker, "--log-format", "json"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        done = subprocess.run(
            [sys.executable, "-m", "magicflow", "run", "workflow.yaml", "--no-local-executor",
             "--broker", broker, "--output", "json"],
            cwd=project, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        executor.send_signal(signal.SIGTERM)
        _, executor_log = executor.communicate(timeout=30)
        asyncio.run(_delete_queues(broker))
    assert done.returncode == 0, done.stderr
    execution_id = json.loads(done.stdout)["execution_id"]
    assert executor.returncode == 0, executor_log
    lines = [json.loads(line) for line in executor_log.splitlines()]
    [hello] = [line for line in lines if line["message"] == "hello from second"]
    assert (hello["execution_id"], hello["step_id"]) == (execution_id, "second")

    [root] = collector.named("execution observed")
    assert root[1:5] == (trace_id(execution_id), span_id(execution_id), None, "magicflow-run")
    steps = collector.named("step first") + collector.named("step second")
    assert {(s[1], s[3], s[4]) for s in steps} == {
        (trace_id(execution_id), span_id(execution_id), "magicflow-executor")
    }
    assert len(steps) == 2


async def _delete_queues(url: str) -> None:
    broker = broker_from_url(url)
    await broker.connect()
    try:
        for queue in ("default", RESULTS_QUEUE):
            await broker.delete_queue(queue)  # type: ignore[attr-defined]
    finally:
        await broker.close()


def test_without_tracing_nothing_of_opentelemetry_is_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith(("OTEL_", "MAGICFLOW_"))]:
        monkeypatch.delenv(name)
    workflow = tmp_path / "nap.yaml"
    workflow.write_text('name: nap\nversion: "1"\nsteps:\n  - id: a\n    sleep: 1ms\n')
    modules = imported_by("run", str(workflow), "--output", "json")
    assert "magicflow.engine.driver" in modules
    assert not {m for m in modules if m.startswith("opentelemetry")}

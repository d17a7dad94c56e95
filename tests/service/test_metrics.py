"""``GET /metrics``: real values move as executions run; open or protected like /health."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from magicflow.engine.model import Emit
from magicflow.errors import StepError
from magicflow.executor import Registry, StepContext
from magicflow.service import Engine
from magicflow.service import metrics as metrics_module
from magicflow.service.app import create_app
from magicflow.service.settings import ServiceSettings
from tests.service.conftest import BROKEN, GREET, register, wait_status

FLAKY = """\
name: flaky
version: "1.0.0"
steps:
  - id: wobble
    function: wobble
    retry_config: {max_attempts: 3, initial_interval: 10ms, jitter: false}
    circuit_breaker: {failure_threshold: 50, timeout: 30s}
"""


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_metrics_count_executions_steps_and_their_durations(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    before = await scrape(anonymous)
    assert value(before, "magicflow_executions_started_total", workflow="greet") == 0
    await register(admin, GREET)
    await register(admin, BROKEN)
    ids = []
    for name in ("ann", "bob"):
        start = await admin.post(
            "/api/v1/workflows/greet/executions", json={"input": {"name": name}}
        )
        ids.append(start.json()["execution_id"])
    broken = (await admin.post("/api/v1/workflows/broken/executions", json={})).json()
    for execution_id in ids:
        await wait_status(admin, execution_id, "completed")
    await wait_status(admin, broken["execution_id"], "failed")

    after = await scrape(anonymous)
    assert value(after, "magicflow_executions_started_total", workflow="greet") == 2
    assert value(after, "magicflow_executions_started_total", workflow="broken") == 1
    finished = "magicflow_executions_finished_total"
    assert value(after, finished, workflow="greet", status="completed") == 2
    assert value(after, finished, workflow="broken", status="failed") == 1
    steps = "magicflow_steps_finished_total"
    assert value(after, steps, workflow="greet", step="hello", status="completed") == 2
    assert value(after, steps, workflow="broken", step="boom", status="failed") == 1
    durations = "magicflow_step_duration_seconds_count"
    assert value(after, durations, workflow="greet", step="hello", status="completed") == 2
    runs = "magicflow_execution_duration_seconds_count"
    assert value(after, runs, workflow="greet", status="completed") == 2
    assert value(after, "magicflow_events_total", kind="execution.started") == 3
    assert value(after, "magicflow_transitions_committed") >= 6
    assert value(after, "magicflow_executions_live") == 0
    assert value(after, "magicflow_queue_depth", queue="default") == 0
    assert value(after, "magicflow_outbox_pending") == 0
    assert ("magicflow_outbox_lag_seconds", frozenset()) in samples(after)


@pytest.fixture
async def flaky_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    calls: dict[str, int] = {}

    def wobble(ctx: StepContext) -> dict[str, Any]:
        calls[ctx.execution_id] = calls.get(ctx.execution_id, 0) + 1
        if ctx.attempt < 3:
            raise StepError("not yet")
        return {"attempts": ctx.attempt}

    registry = Registry()
    registry.register("wobble", wobble)
    store = f"sqlite:///{tmp_path / 'flaky.db'}"
    async with Engine(store=store, registry=registry, shutdown_grace=0.5) as engine:
        app = create_app(engine, ServiceSettings(auth=False))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_metrics_count_retries_and_show_breakers(flaky_client: httpx.AsyncClient) -> None:
    await register(flaky_client, FLAKY)
    start = await flaky_client.post("/api/v1/workflows/flaky/executions", json={})
    await wait_status(flaky_client, start.json()["execution_id"], "completed")
    text = await scrape(flaky_client)
    assert value(text, "magicflow_step_retries_total", workflow="flaky", step="wobble") == 2
    assert value(text, "magicflow_events_total", kind="step.retrying") == 2
    assert ("magicflow_breaker_state", frozenset({("function", "wobble")})) in samples(text)
    assert value(text, "magicflow_breaker_state", function="wobble") == 0  # closed


async def test_events_of_an_execution_not_seen_starting_are_labelled_from_the_store(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, app: Any, engine: Engine
) -> None:
    await register(admin, GREET)
    start = await admin.post("/api/v1/workflows/greet/executions", json={"input": {"name": "x"}})
    execution_id = start.json()["execution_id"]
    await wait_status(admin, execution_id, "completed")
    recorder = app.state.service.metrics
    recorder.record(execution_id, [Emit(kind="execution.timed_out")])  # as after a restart
    recorder.record("01NOSUCHEXECUTION", [Emit(kind="step.retrying", step_id="s")])
    text = await scrape(anonymous)
    finished = "magicflow_executions_finished_total"
    assert value(text, finished, workflow="greet", status="timed_out") == 1
    assert value(text, "magicflow_step_retries_total", workflow="unknown", step="s") == 1


@pytest.mark.parametrize("settings", [ServiceSettings(open_health=False)])
async def test_metrics_need_a_key_when_health_is_protected(
    anonymous: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    assert (await anonymous.get("/metrics")).status_code == 401
    viewer = {"Authorization": f"Bearer {keys['viewer']}"}
    assert (await anonymous.get("/metrics", headers=viewer)).status_code == 200


def test_executions_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "MAX_LIVE", 2)
    recorder = metrics_module.Metrics()
    for execution_id in ("a", "b", "c"):
        started = Emit(kind="execution.started", data={"workflow": "w", "version": "1"})
        recorder.record(execution_id, [started])
    recorder.record("c", [Emit(kind="execution.completed")])
    text = generate_latest(recorder.registry).decode()
    assert value(text, "magicflow_executions_started_total", workflow="w") == 3
    assert value(text, "magicflow_executions_finished_total", workflow="w", status="completed") == 1
    assert value(text, "magicflow_executions_live") == 1

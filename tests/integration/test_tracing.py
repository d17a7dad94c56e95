"""OpenTelemetry: one trace per execution, a span per step attempt, the context carried to the
executor in the task message (here in process; and through a real Redis broker to an executor
with a tracer provider of its own, as another process would have)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import magicflow
from magicflow.brokers import broker_from_url
from magicflow.brokers.base import RESULTS_QUEUE
from magicflow.dsl import compile_workflow
from magicflow.executor import Executor, Registry
from magicflow.service import Engine
from magicflow.tracecontext import span_id, trace_id

REDIS = os.environ.get("MAGICFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

TRACED = """
name: traced
version: "1"
steps:
  - id: a
    function: flaky
    retry_config: {strategy: fixed, max_attempts: 2, initial_interval: 10ms, jitter: false}
  - id: b
    function: nested
    depends_on: [a]
  - id: kyc
    workflow: child@1
    depends_on: [a]
"""
CHILD = """
name: child
version: "1"
steps:
  - id: score
    function: nested
"""
BROKEN = """
name: broken
version: "1"
steps:
  - id: only
    function: boom
    retry_config: {strategy: fixed, max_attempts: 2, initial_interval: 10ms, jitter: false}
"""
REMOTE = """
name: traced
version: "1"
steps:
  - id: a
    function: flaky
    queue: {queue}
    retry_config: {{strategy: fixed, max_attempts: 2, initial_interval: 10ms, jitter: false}}
"""


class Spans:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        [span] = self.named(name)
        return span


@pytest.fixture
def spans() -> Iterator[Spans]:
    made = Spans()
    yield made
    made.provider.shutdown()


def registry_for(provider: TracerProvider) -> Registry:
    calls: dict[str, int] = {}
    registry = Registry()

    def flaky(ctx: magicflow.StepContext) -> dict[str, Any]:
        calls[ctx.execution_id] = calls.get(ctx.execution_id, 0) + 1
        if calls[ctx.execution_id] == 1:
            raise ConnectionError("first call fails")
        return {"ok": True}

    def nested(ctx: magicflow.StepContext) -> None:
        with provider.get_tracer("user").start_as_current_span("inside the function"):
            pass

    def boom(ctx: magicflow.StepContext) -> None:
        raise ValueError("always")

    for fn in (flaky, nested, boom):
        registry.register(fn.__name__, fn)
    return registry


def _ctx(span: ReadableSpan) -> trace.SpanContext:
    assert span.context is not None
    return span.context


def _parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def traced_engine(spans: Spans, tmp_path: Path, registry: Registry | None = None) -> Engine:
    """An embedded engine (SQLite, in-process broker and executor) tracing to ``spans``."""
    return magicflow.Engine(
        store=f"sqlite:///{tmp_path / 'x.db'}",
        registry=registry or registry_for(spans.provider),
        tracer_provider=spans.provider,
    )


async def test_one_trace_per_execution_a_span_per_attempt(spans: Spans, tmp_path: Path) -> None:
    async with traced_engine(spans, tmp_path) as engine:
        for text in (CHILD, TRACED):
            await engine.register(compile_workflow(text, "x.yaml"))
        result = await engine.run("traced", {}, timeout=30)
    assert result["status"] == "completed"
    eid = result["execution_id"]

    everything = spans.exporter.get_finished_spans()
    assert {_ctx(s).trace_id for s in everything} == {trace_id(eid)}, "one trace"

    root = spans.one("execution traced")
    assert root.parent is None
    assert _ctx(root).span_id == span_id(eid)
    assert root.attributes is not None
    assert root.attributes["magicflow.execution_id"] == eid
    assert root.attributes["magicflow.status"] == "completed"
    assert root.status.status_code is trace.StatusCode.UNSET
    kinds = [event.name for event in root.events]
    assert kinds[0] == "execution.started"
    assert "step.retrying" in kinds
    assert kinds[-1] == "execution.completed"

    first, second = sorted(spans.named("step a"), key=lambda s: s.start_time or 0)
    for attempt, span in enumerate((first, second), start=1):
        assert _parent_id(span) == span_id(eid)
        assert span.attributes is not None
        assert span.attributes["magicflow.attempt"] == attempt
        assert span.attributes["magicflow.step_id"] == "a"
        assert span.attributes["magicflow.function"] == "flaky"
        assert span.attributes["magicflow.workflow"] == "traced@1"
    assert first.status.status_code is trace.StatusCode.ERROR
    assert "ConnectionError: first call fails" in (first.status.description or "")
    [exception] = [e for e in first.events if e.name == "exception"]
    assert exception.attributes is not None
    assert exception.attributes["exception.type"] == "ConnectionError"
    assert second.status.status_code is trace.StatusCode.UNSET

    step_b = spans.one("step b")
    assert _parent_id(step_b) == span_id(eid)
    # the function's own span (made in its thread) is a child of the attempt's span
    inner = [s for s in spans.named("inside the function") if _parent_id(s) == _ctx(step_b).span_id]
    assert len(inner) == 1

    # the sub-workflow: its execution's span is a child of the parent's, in the same trace
    child = spans.one("execution child")
    assert _parent_id(child) == span_id(eid)
    assert child.attributes is not None
    child_id = str(child.attributes["magicflow.execution_id"])
    assert child_id.startswith(f"{eid}.kyc.")
    assert _ctx(child).span_id == span_id(child_id)
    assert _parent_id(spans.one("step score")) == span_id(child_id)


async def test_a_failed_execution_has_an_error_span(spans: Spans, tmp_path: Path) -> None:
    async with traced_engine(spans, tmp_path) as engine:
        await engine.register(compile_workflow(BROKEN, "x.yaml"))
        result = await engine.run("broken", {}, timeout=30)
    assert result["status"] == "failed"
    root = spans.one("execution broken")
    assert root.status.status_code is trace.StatusCode.ERROR
    assert "ValueError: always" in (root.status.description or "")
    attempts = spans.named("step only")
    assert len(attempts) == result["steps"]["only"]["attempts"] > 1
    for step in attempts:
        assert step.status.status_code is trace.StatusCode.ERROR
        assert _parent_id(step) == _ctx(root).span_id


async def test_a_retried_execution_adds_a_run_span_under_its_span(
    spans: Spans, tmp_path: Path
) -> None:
    healthy = False

    def sometimes(ctx: magicflow.StepContext) -> str:
        if not healthy:
            raise magicflow.NonRetryableError("down")
        return "up"

    registry = Registry()
    registry.register("boom", sometimes)
    async with traced_engine(spans, tmp_path, registry) as engine:
        await engine.register(compile_workflow(BROKEN, "x.yaml"))
        failed = await engine.run("broken", {}, timeout=30)
        healthy = True
        await engine.retry(failed["execution_id"])
        again = await engine.wait(failed["execution_id"], timeout=30)
    assert (failed["status"], again["status"]) == ("failed", "completed")
    eid = failed["execution_id"]
    root = spans.one("execution broken")
    assert _ctx(root).span_id == span_id(eid)
    assert root.status.status_code is trace.StatusCode.ERROR
    rerun = spans.one("execution broken (retry)")
    assert _ctx(rerun).trace_id == trace_id(eid)
    assert _parent_id(rerun) == span_id(eid)
    assert rerun.status.status_code is trace.StatusCode.UNSET
    assert rerun.events[0].name == "execution.retried"
    attempts = spans.named("step only")
    assert [s.status.status_code for s in sorted(attempts, key=lambda s: s.start_time or 0)] == [
        trace.StatusCode.ERROR,
        trace.StatusCode.UNSET,
    ]
    assert {_parent_id(s) for s in attempts} == {span_id(eid)}


@pytest.mark.services
async def test_the_context_crosses_a_real_broker(spans: Spans, tmp_path: Path) -> None:
    """The service and the executor have a tracer provider each (as two processes would);
    the executor's spans find their parent through the task message alone."""
    queue = f"tracing-{uuid.uuid4().hex[:10]}"
    url = f"{REDIS}?namespace={queue}"  # results too: no other test's service takes them
    workflow = REMOTE.format(queue=queue)
    executor_spans = Spans()
    worker_broker = broker_from_url(url)
    await worker_broker.connect()
    try:
        async with (
            magicflow.Engine(
                store=f"sqlite:///{tmp_path / 'x.db'}",
                broker=url,
                tracer_provider=spans.provider,
            ) as engine,
            Executor(
                worker_broker,
                registry_for(executor_spans.provider),
                queues=[queue],
                tracer_provider=executor_spans.provider,
                shutdown_grace=1.0,
            ),
        ):
            await engine.register(compile_workflow(workflow, "x.yaml"))
            result = await engine.run("traced", {}, timeout=30)
    finally:
        for name in (queue, RESULTS_QUEUE):
            await worker_broker.delete_queue(name)  # type: ignore[attr-defined]
        await worker_broker.close()
        executor_spans.provider.shutdown()
    assert result["status"] == "completed"
    eid = result["execution_id"]
    root = spans.one("execution traced")
    assert (_ctx(root).trace_id, _ctx(root).span_id) == (trace_id(eid), span_id(eid))
    attempts = executor_spans.named("step a")
    assert len(attempts) == 2
    for span in attempts:
        assert _ctx(span).trace_id == trace_id(eid)
        assert _parent_id(span) == span_id(eid)
        assert span.parent is not None
        assert span.parent.is_remote
    assert not spans.named("step a"), "the service ran no step"

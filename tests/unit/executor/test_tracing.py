"""The executor's span per attempt: a child of the ``traceparent`` the task message carries."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from magicflow.brokers.memory import MemoryBroker
from magicflow.executor import Executor, Registry, StepContext
from magicflow.messages import encode
from magicflow.tracecontext import span_id, trace_id

from .helpers import collect_results, make_task

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def recording() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_the_attempt_span_is_a_child_of_the_messages_traceparent() -> None:
    provider, exporter = recording()
    registry = Registry()

    def fails(ctx: StepContext) -> None:
        raise KeyError("missing")

    registry.register("fails", fails)
    registry.register("works", lambda ctx: None)
    broker = MemoryBroker()
    carried = make_task("fails", context={"traceparent": PARENT}, item_index=2, attempt=3)
    derived = make_task("works", context={"traceparent": "garbage"})  # derived from the id
    async with Executor(broker, registry, tracer_provider=provider, executor_id="ex-1"):
        await broker.publish("default", [encode(carried), encode(derived)])
        await collect_results(broker, 2)
    spans = {span.attributes["magicflow.task_id"]: span for span in exporter.get_finished_spans()}  # type: ignore[index]

    span = spans[carried.id]
    assert span.context is not None
    assert span.parent is not None
    assert (span.context.trace_id, span.parent.span_id) == (
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
    )
    assert span.name == "step validate-user"
    assert span.kind is trace.SpanKind.CONSUMER
    assert dict(span.attributes or {}) == {
        "magicflow.execution_id": "exec-1",
        "magicflow.workflow": "user-onboarding@1.2.0",
        "magicflow.step_id": "validate-user",
        "magicflow.step_type": "function",
        "magicflow.function": "fails",
        "magicflow.attempt": 3,
        "magicflow.task_id": carried.id,
        "magicflow.executor_id": "ex-1",
        "messaging.destination.name": "default",
        "magicflow.item_index": 2,
        "magicflow.status": "failed",
    }
    assert span.status.status_code is trace.StatusCode.ERROR
    [event] = span.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "KeyError"
    assert "Traceback" in str(event.attributes["exception.stacktrace"])

    other = spans[derived.id]
    assert other.context is not None
    assert other.parent is not None
    assert (other.context.trace_id, other.parent.span_id) == (trace_id("exec-1"), span_id("exec-1"))
    assert other.status.status_code is trace.StatusCode.UNSET


async def test_a_poison_message_gets_an_error_span_without_running() -> None:
    provider, exporter = recording()
    broker = MemoryBroker()
    task = make_task("never-registered")
    await broker.publish("default", [encode(task)])
    for _ in range(2):  # two deliveries that "crashed" their consumer
        await broker.nack(await broker.receive("default", 1, 0.1))
    async with Executor(broker, Registry(), max_deliveries=2, tracer_provider=provider):
        await collect_results(broker, 1)
    [span] = exporter.get_finished_spans()
    assert span.status.status_code is trace.StatusCode.ERROR
    assert "PoisonMessage" in (span.status.description or "")
    assert span.parent is not None
    assert span.parent.span_id == span_id("exec-1")

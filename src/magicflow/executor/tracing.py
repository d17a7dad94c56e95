"""A span per step attempt, child of the execution's span named by the task's ``traceparent``.

Loaded only when an executor is given a tracer provider: without one, nothing of OpenTelemetry
is imported and a task costs nothing more. The span is the current span while the business
function runs (sync functions too: their thread gets a copy of the context), so spans the
function makes itself (an instrumented HTTP client, say) are children of the attempt.
"""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from magicflow.messages import ResultMessage, TaskMessage
from magicflow.tracecontext import TRACEPARENT, parse_traceparent, traceparent

_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)


class AttemptSpan:
    """The span of one attempt; ``end`` once with its outcome."""

    __slots__ = ("_span", "_token")

    def __init__(self, tracer: trace.Tracer, task: TaskMessage, executor_id: str) -> None:
        header = task.context.get(TRACEPARENT)
        # absent (a message from an older service) or unreadable: derived from the id again
        ids = parse_traceparent(header) if isinstance(header, str) else None
        trace_id, span_id = ids or parse_traceparent(traceparent(task.execution_id)) or (1, 1)
        parent = trace.set_span_in_context(
            trace.NonRecordingSpan(
                trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=_SAMPLED)
            )
        )
        attributes: dict[str, AttributeValue] = {
            "magicflow.execution_id": task.execution_id,
            "magicflow.workflow": task.workflow_id,
            "magicflow.step_id": task.step_id,
            "magicflow.step_type": task.step_type,
            "magicflow.function": task.function,
            "magicflow.attempt": task.attempt,
            "magicflow.task_id": task.id,
            "magicflow.executor_id": executor_id,
            "messaging.destination.name": task.queue,
        }
        if task.item_index is not None:
            attributes["magicflow.item_index"] = task.item_index
        self._span = tracer.start_span(
            f"step {task.step_id}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
        )
        self._token = otel_context.attach(trace.set_span_in_context(self._span))

    def end(self, result: ResultMessage | None, *, cancelled: bool = False) -> None:
        """End the span: error status and an ``exception`` event for a failed attempt."""
        otel_context.detach(self._token)
        span = self._span
        if result is not None:
            span.set_attribute("magicflow.status", result.status)
            error = result.error
            if error is not None:
                span.set_status(trace.StatusCode.ERROR, f"{error.type}: {error.message}")
                event: dict[str, AttributeValue] = {
                    "exception.type": error.type,
                    "exception.message": error.message,
                }
                if error.traceback:
                    event["exception.stacktrace"] = error.traceback
                span.add_event("exception", event)
        elif cancelled:
            span.set_attribute("magicflow.status", "cancelled")
        span.end()


class StepTracer:
    """Makes the attempt spans of one executor."""

    def __init__(self, provider: trace.TracerProvider, executor_id: str) -> None:
        self._tracer = provider.get_tracer("magicflow.executor")
        self._executor_id = executor_id

    def start(self, task: TaskMessage) -> AttemptSpan:
        """A span for ``task``, current in the calling context until it ends."""
        return AttemptSpan(self._tracer, task, self._executor_id)

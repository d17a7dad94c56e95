"""The execution's span: emitted by the service when an execution ends, with the ids that its
task messages already named (``magicflow.tracecontext``).

``ExecutionSpans.record`` is a driver listener. It keeps the lifecycle events of the
executions it sees (``step.started``, ``step.retrying`` ...) as span events; when an execution
ends, it reads the execution's state (start and end times, workflow, status, parent) and emits
its span. Step attempt spans, made by executors in other processes, are children of it; a
sub-workflow's span is a child of its parent execution's span. A run after ``retry`` is a
span of its own, child of the execution's span (which was emitted when the first run ended).

The span ids are not the tracer's random ones: the tracer's id generator (an attribute of the
SDK's tracer) is wrapped so that it hands out the derived ids for this one span. A tracer
without one (the no-op tracer of the API) records nothing anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Final

import msgspec
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.util.types import AttributeValue

from magicflow.engine.model import Emit, ExecutionState, ExecutionStatus
from magicflow.tracecontext import span_id, trace_id

if TYPE_CHECKING:
    from magicflow.stores import Store

logger = logging.getLogger(__name__)

MAX_LIVE: Final = 100_000  # executions whose events are kept (the oldest go first)
MAX_EVENTS: Final = 256  # span events per execution span

_ENDS = frozenset(
    f"execution.{status}" for status in ExecutionStatus if ExecutionStatus(status).is_terminal
)
_ERRORS = frozenset({ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT})
_decode_state = msgspec.json.Decoder(ExecutionState).decode


class _DerivedIds:
    """Wraps a tracer's id generator: the next span gets the ids set here, if any."""

    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback
        self.trace_id: int | None = None
        self.span_id: int | None = None

    def generate_trace_id(self) -> int:
        forced = self.trace_id
        return int(self.fallback.generate_trace_id()) if forced is None else forced

    def generate_span_id(self) -> int:
        forced = self.span_id
        return int(self.fallback.generate_span_id()) if forced is None else forced

    def is_trace_id_random(self) -> bool:
        return False


class ExecutionSpans:
    """Emits execution spans; ``record`` is the driver's listener, ``drain`` waits for the
    spans of the executions that have ended."""

    def __init__(self, provider: trace.TracerProvider, store: Store) -> None:
        self._tracer = provider.get_tracer("magicflow.service")
        self._ids: _DerivedIds | None = None
        fallback = getattr(self._tracer, "id_generator", None)
        if fallback is not None:
            self._ids = _DerivedIds(fallback)
            self._tracer.id_generator = self._ids  # type: ignore[attr-defined]
        self._store = store
        self._events: dict[str, list[tuple[int, Emit]]] = {}
        self._pending: set[asyncio.Task[None]] = set()

    def record(self, execution_id: str, emits: list[Emit]) -> None:
        now = time.time_ns()
        events = self._events.get(execution_id)
        for emit in emits:
            if events is None:
                if len(self._events) >= MAX_LIVE:
                    del self._events[next(iter(self._events))]
                events = self._events[execution_id] = []
            if len(events) < MAX_EVENTS:
                events.append((now, emit))
            if emit.kind in _ENDS:
                del self._events[execution_id]
                task = asyncio.get_running_loop().create_task(self._ended(execution_id, events))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
                events = None

    async def drain(self) -> None:
        while self._pending:
            await asyncio.wait(list(self._pending))

    async def _ended(self, execution_id: str, events: list[tuple[int, Emit]]) -> None:
        try:
            found = await self._store.load(execution_id)
        except Exception as exc:
            logger.warning(
                "no span for execution %s: reading it failed: %s",
                execution_id,
                exc,
                extra={"execution_id": execution_id},
            )
            return
        if found is not None:
            self.emit(_decode_state(found[1]), events)

    def emit(self, state: ExecutionState, events: list[tuple[int, Emit]]) -> None:
        """The span of ``state`` (an ended execution), with ``events`` as its span events."""
        retried_at = next((t for t, e in reversed(events) if e.kind == "execution.retried"), None)
        eid = state.id
        if retried_at is not None:  # a later run: a child of the execution's span
            parent: trace.SpanContext | None = _remote(eid, eid)
            start, forced = retried_at, None
        else:
            parent = None if state.parent_id is None else _remote(eid, state.parent_id)
            start, forced = _ns(state.started_at or state.created_at), span_id(eid)
        attributes: dict[str, AttributeValue] = {
            "magicflow.execution_id": eid,
            "magicflow.workflow": f"{state.workflow}@{state.version}",
            "magicflow.status": str(state.status),
        }
        if state.parent_id is not None:
            attributes["magicflow.parent_execution_id"] = state.parent_id
        context = Context()  # a root span, whatever is current where this runs
        if parent is not None:
            context = trace.set_span_in_context(trace.NonRecordingSpan(parent), context)
        ids = self._ids
        if ids is not None and forced is not None:
            ids.trace_id, ids.span_id = trace_id(eid), forced
        try:
            span = self._tracer.start_span(
                f"execution {state.workflow}" + (" (retry)" if retried_at is not None else ""),
                context=context,
                attributes=attributes,
                start_time=start,
            )
        finally:
            if ids is not None:
                ids.trace_id = ids.span_id = None
        for timestamp, emit in events:
            span.add_event(emit.kind, _event_attributes(emit), timestamp)
        if state.status in _ERRORS and state.error is not None:
            span.set_status(trace.StatusCode.ERROR, f"{state.error.type}: {state.error.message}")
        end = state.completed_at
        span.end(_ns(end) if end is not None else time.time_ns())


def _remote(execution_id: str, parent_execution_id: str) -> trace.SpanContext:
    return trace.SpanContext(
        trace_id(execution_id),
        span_id(parent_execution_id),
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _event_attributes(emit: Emit) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    if emit.step_id is not None:
        attributes["magicflow.step_id"] = emit.step_id
    for key, value in emit.data.items():
        if isinstance(value, str | bool | int | float):
            attributes[key] = value
        elif isinstance(value, dict):
            for inner, item in value.items():
                attributes[f"{key}.{inner}"] = str(item)
    return attributes

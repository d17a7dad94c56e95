"""Prometheus metrics (``GET /metrics``): a registry owned by the app, never the global one.

Two sources:

- The engine's lifecycle events: ``Metrics.record`` is a driver listener, called after each
  commit with what the transition emitted (``execution.started``, ``step.retrying`` ...).
  Executions and steps are labelled by workflow; ``execution.started`` names it, and this
  process remembers it while the execution runs. Events of an execution it did not see start
  (started before a restart, or retried after it ended) are kept aside and labelled at the
  next scrape, from the store. Durations are measured from the ``started`` event this process
  saw to the end event (none is observed without it).
- Gauges read at scrape time (``Metrics.refresh``): circuit breakers from the store, the depth
  of each queue when the broker can tell (the in-process broker), the outbox's pending rows and
  the age of the oldest one (since a scrape first saw it), the driver's commit counters.

Every name starts with ``magicflow_``; docs/api.md lists them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import msgspec
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from magicflow.brokers.base import RESULTS_QUEUE
from magicflow.engine.model import BreakerState, Emit, ExecutionState

if TYPE_CHECKING:
    from magicflow.service.engine import Engine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNKNOWN = "unknown"
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
MAX_UNRESOLVED = 10_000  # executions whose workflow is looked up at the next scrape
MAX_LIVE = 200_000  # executions remembered (another server may end them: the oldest go first)
OUTBOX_SCAN = 10_000  # pending outbox rows counted at most per scrape

_STEP_ENDS = {
    "step.completed": "completed",
    "step.failed": "failed",
    "step.skipped": "skipped",
    "step.cancelled": "cancelled",
}
_EXECUTION_ENDS = {
    "execution.completed": "completed",
    "execution.failed": "failed",
    "execution.cancelled": "cancelled",
    "execution.timed_out": "timed_out",
}
_DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
_decode_state = msgspec.json.Decoder(ExecutionState).decode
_decode_breaker = msgspec.json.Decoder(BreakerState).decode


@runtime_checkable
class _Measurable(Protocol):
    """A broker that can tell how many messages a queue holds (``MemoryBroker``)."""

    def depth(self, queue: str) -> int: ...


@dataclass(slots=True)
class _Live:
    workflow: str
    started: float
    steps: dict[str, float] = field(default_factory=dict)  # step id -> started (monotonic)


class Metrics:
    """The app's metrics; ``record`` is the driver's listener, ``render`` answers a scrape."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self._live: dict[str, _Live] = {}
        self._unresolved: dict[str, list[Emit]] = {}
        self._outbox_seen: dict[int, float] = {}  # pending outbox id -> first seen (epoch)

        self.executions_started = Counter(
            "magicflow_executions_started_total",
            "Executions started.",
            ["workflow"],
            registry=registry,
        )
        self.executions_finished = Counter(
            "magicflow_executions_finished_total",
            "Executions ended, by final status (completed, failed, cancelled, timed_out).",
            ["workflow", "status"],
            registry=registry,
        )
        self.execution_duration = Histogram(
            "magicflow_execution_duration_seconds",
            "From start to end, for executions this process saw start.",
            ["workflow", "status"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.steps_finished = Counter(
            "magicflow_steps_finished_total",
            "Steps ended, by status (completed, failed, timed_out, skipped, cancelled).",
            ["workflow", "step", "status"],
            registry=registry,
        )
        self.step_duration = Histogram(
            "magicflow_step_duration_seconds",
            "From the step's start to its end, retries included.",
            ["workflow", "step", "status"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.step_retries = Counter(
            "magicflow_step_retries_total",
            "Failed attempts that are retried after a backoff.",
            ["workflow", "step"],
            registry=registry,
        )
        self.step_timeouts = Counter(
            "magicflow_step_timeouts_total",
            "Attempts (or steps) that ran out of time.",
            ["workflow", "step"],
            registry=registry,
        )
        self.trigger_messages = Counter(
            "magicflow_trigger_messages_total",
            "Messages of event triggers consumed by this process, by outcome (started: the "
            "execution started or found started; dead_lettered; retried: requeued for later).",
            ["workflow", "outcome"],
            registry=registry,
        )
        self.events = Counter(
            "magicflow_events_total",
            "Lifecycle events committed by this process, by kind.",
            ["kind"],
            registry=registry,
        )
        self.executions_running = Gauge(
            "magicflow_executions_live",
            "Executions this process saw start that have not ended.",
            registry=registry,
        )
        self.executions_running.set_function(lambda: len(self._live))
        self.breaker_state = Gauge(
            "magicflow_breaker_state",
            "Circuit breaker per function: 0 closed, 1 half open, 2 open.",
            ["function"],
            registry=registry,
        )
        self.breaker_failures = Gauge(
            "magicflow_breaker_failures",
            "Consecutive failures counted by a closed breaker.",
            ["function"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "magicflow_queue_depth",
            "Messages waiting or in flight in a queue (brokers that can tell).",
            ["queue"],
            registry=registry,
        )
        self.outbox_pending = Gauge(
            "magicflow_outbox_pending",
            f"Task messages committed but not yet published (counted up to {OUTBOX_SCAN}).",
            registry=registry,
        )
        self.outbox_lag = Gauge(
            "magicflow_outbox_lag_seconds",
            "Age of the oldest unpublished outbox row (since a scrape first saw it).",
            registry=registry,
        )
        self.transitions = Gauge(
            "magicflow_transitions_committed",
            "Transitions committed by this process's driver since it started.",
            registry=registry,
        )
        self.batches = Gauge(
            "magicflow_commit_batches",
            "Group commits made by this process's driver since it started.",
            registry=registry,
        )
        self.partitions_held = Gauge(
            "magicflow_partitions_held",
            "Execution partitions this instance holds a lease on (several instances only).",
            registry=registry,
        )
        self.partitions_total = Gauge(
            "magicflow_partitions_total",
            "Execution partitions the instances share (several instances only).",
            registry=registry,
        )
        self.scrape_errors = Counter(
            "magicflow_metrics_scrape_errors_total",
            "Scrapes where a backend could not be read (its gauges keep their last value).",
            ["source"],
            registry=registry,
        )

    # ------------------------------------------------------------------ events

    def record_trigger(self, workflow: str, outcome: str, count: int) -> None:
        """A trigger's consumer settled ``count`` messages this way (``Triggers`` listener)."""
        self.trigger_messages.labels(workflow, outcome).inc(count)

    def record(self, execution_id: str, emits: list[Emit]) -> None:
        """The driver's listener: count what one committed transition emitted."""
        live = self._live.get(execution_id)
        if live is None:
            if emits and emits[0].kind == "execution.started":
                workflow = str(emits[0].data.get("workflow", UNKNOWN))
                if len(self._live) >= MAX_LIVE:
                    del self._live[next(iter(self._live))]
                live = self._live[execution_id] = _Live(workflow, time.monotonic())
            else:
                self._defer(execution_id, emits)
                return
        self._apply(execution_id, live, emits)

    def _defer(self, execution_id: str, emits: list[Emit]) -> None:
        pending = self._unresolved.get(execution_id)
        if pending is not None:
            pending.extend(emits)
        elif len(self._unresolved) < MAX_UNRESOLVED:
            self._unresolved[execution_id] = list(emits)
        else:
            self._apply(execution_id, _Live(UNKNOWN, time.monotonic()), emits)

    def _apply(self, execution_id: str, live: _Live, emits: list[Emit]) -> None:
        workflow = live.workflow
        for emit in emits:
            kind = emit.kind
            self.events.labels(kind).inc()
            if kind.startswith("step.") and emit.step_id is not None:
                self._step(live, emit)
            elif kind == "execution.started":
                self.executions_started.labels(workflow).inc()
            elif kind in _EXECUTION_ENDS:
                status = _EXECUTION_ENDS[kind]
                self.executions_finished.labels(workflow, status).inc()
                if self._live.pop(execution_id, None) is not None:
                    elapsed = time.monotonic() - live.started
                    self.execution_duration.labels(workflow, status).observe(elapsed)

    def _step(self, live: _Live, emit: Emit) -> None:
        kind, step = emit.kind, str(emit.step_id)
        if "item" in emit.data:  # one item of a for_each step: counted as retries/timeouts
            if kind == "step.retrying":
                self.step_retries.labels(live.workflow, step).inc()
            elif kind == "step.timed_out":
                self.step_timeouts.labels(live.workflow, step).inc()
            return
        if kind == "step.started":
            live.steps[step] = time.monotonic()
            return
        if kind == "step.retrying":
            self.step_retries.labels(live.workflow, step).inc()
            return
        status = _STEP_ENDS.get(kind)
        if kind == "step.timed_out":
            self.step_timeouts.labels(live.workflow, step).inc()
            # with an ``action`` (retry, skip, fallback) the step goes on; without, it ended
            status = None if "action" in emit.data else "timed_out"
        if status is None:
            return
        self.steps_finished.labels(live.workflow, step, status).inc()
        started = live.steps.pop(step, None)
        if started is not None:
            self.step_duration.labels(live.workflow, step, status).observe(
                time.monotonic() - started
            )

    # ------------------------------------------------------------------ scrape

    async def render(self, engine: Engine) -> bytes:
        """The exposition text, after refreshing what is read at scrape time."""
        await self.refresh(engine)
        return generate_latest(self.registry)

    async def refresh(self, engine: Engine) -> None:
        for source, step in (
            ("executions", self._resolve),
            ("breakers", self._breakers),
            ("queues", self._queues),
            ("outbox", self._outbox),
        ):
            try:
                await step(engine)
            except Exception:  # a backend that is down: its gauges keep their last value
                self.scrape_errors.labels(source).inc()
        self.transitions.set(engine.driver.transitions)
        self.batches.set(engine.driver.batches)
        ownership = engine.driver.ownership
        if ownership is not None:
            self.partitions_held.set(len(ownership.held))
            self.partitions_total.set(ownership.partitions)

    async def _resolve(self, engine: Engine) -> None:
        """Label the events of executions this process did not see start."""
        if not self._unresolved:
            return
        pending, self._unresolved = self._unresolved, {}
        found = await engine.store.load_many(list(pending))
        for execution_id, emits in pending.items():
            blob = found.get(execution_id)
            workflow = UNKNOWN if blob is None else _decode_state(blob[1]).workflow
            live = self._live.get(execution_id)
            if live is None:
                live = _Live(workflow, time.monotonic())
                if not _ends(emits):
                    self._live[execution_id] = live
            self._apply(execution_id, live, emits)

    async def _breakers(self, engine: Engine) -> None:
        breakers = await engine.store.load_breakers()
        self.breaker_state.clear()
        self.breaker_failures.clear()
        for function, blob in breakers.items():
            breaker = _decode_breaker(blob)
            self.breaker_state.labels(function).set(BREAKER_STATES.get(breaker.state, 0))
            self.breaker_failures.labels(function).set(breaker.failures)

    async def _queues(self, engine: Engine) -> None:
        broker = engine.broker
        if not isinstance(broker, _Measurable):
            return
        queues = {"default", RESULTS_QUEUE}
        for record in await engine.store.list_definitions(include_deleted=False):
            queues.update(step.queue for step in engine.catalog.plan_of(record).steps)
        for queue in sorted(queues):
            self.queue_depth.labels(queue).set(broker.depth(queue))

    async def _outbox(self, engine: Engine) -> None:
        pending = await engine.store.pending_outbox(OUTBOX_SCAN)
        now = time.time()
        ids = {message.id for message in pending}
        seen = {i: self._outbox_seen.get(i, now) for i in ids}
        self._outbox_seen = seen
        self.outbox_pending.set(len(pending))
        self.outbox_lag.set(now - min(seen.values()) if seen else 0.0)


def _ends(emits: list[Emit]) -> bool:
    return any(emit.kind in _EXECUTION_ENDS for emit in emits)

"""The in-process Python API: ``async with Engine(store=..., broker=..., registry=...) as engine``.

The engine owns the store and broker it creates from URLs (objects given to it are opened but
left for their owner to close), the driver (with its results consumer and outbox relay), and,
when a registry of business functions is given, local executors serving every queue that the
registered workflows use. Shutdown goes in phases: the executors stop taking tasks and finish
what runs (``shutdown_grace``), then the driver commits its last batch, then the backends close.

Over a store with partition leases (PostgreSQL) and a broker that keeps messages, the engine is
one of possibly several service instances: it decides the executions of the partitions it
holds (``engine.driver.ownership``) and reads the others' progress from the store.

    async with Engine(store="sqlite:///flows.db", registry=registry) as engine:
        await engine.register_file("onboarding.yaml")
        result = await engine.run("user-onboarding", {"email": "a@b.c"})
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec

from magicflow.brokers import Broker, broker_from_url
from magicflow.brokers.memory import MemoryBroker
from magicflow.dsl import Diagnostic, WorkflowPlan, load_workflow, validate_input
from magicflow.engine.driver import Driver
from magicflow.engine.machine import decide
from magicflow.engine.model import (
    CancelRequested,
    CancelTask,
    Event,
    ExecutionState,
    ExecutionStatus,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    SignalReceived,
    Start,
)
from magicflow.engine.ownership import Ownership
from magicflow.engine.partitions import DEFAULT_PARTITIONS
from magicflow.engine.view import execution_document
from magicflow.errors import ConflictError, MagicFlowError, NotFoundError, WorkflowValidationError
from magicflow.executor import Executor, Registry
from magicflow.service.catalog import Catalog
from magicflow.service.ids import new_execution_id
from magicflow.stores import Store, store_from_url
from magicflow.stores.base import Leases

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from magicflow.service.tracing import ExecutionSpans

_decode_state = msgspec.json.Decoder(ExecutionState).decode
_POLL = 0.5  # seconds between reads of an execution another instance decides
_encode_json = msgspec.json.Encoder().encode

_ALLOWED: dict[type[Event], frozenset[ExecutionStatus]] = {
    CancelRequested: frozenset(
        {ExecutionStatus.PENDING, ExecutionStatus.RUNNING, ExecutionStatus.PAUSED}
    ),
    PauseRequested: frozenset({ExecutionStatus.PENDING, ExecutionStatus.RUNNING}),
    ResumeRequested: frozenset({ExecutionStatus.PAUSED}),
    RetryRequested: frozenset(
        {ExecutionStatus.FAILED, ExecutionStatus.CANCELLED, ExecutionStatus.TIMED_OUT}
    ),
    SignalReceived: frozenset(
        {ExecutionStatus.PENDING, ExecutionStatus.RUNNING, ExecutionStatus.PAUSED}
    ),
}


class Engine:
    """Magic Flow embedded in this process.

    ``store``: a URL (``sqlite:///PATH``, ``memory://``) or a Store; ``broker``: a URL
    (``memory://``) or a Broker. ``registry``: business functions to run in local executors
    (``concurrency`` steps at once each); without one, steps wait for executor processes on the
    broker. ``queues``: served locally from the start (the queues of registered workflows are
    added as they are registered). ``batch_size``: most events decided per group commit.
    ``record_events``: keep each transition's lifecycle events in the store (``read_events``).
    ``clock``: epoch seconds (tests move it by hand, then call ``engine.driver.wake()``).
    ``tune_interpreter``: see ``_tune_interpreter``; restored when the engine stops.
    ``tracer_provider``: an OpenTelemetry tracer provider; each execution gets a span when it
    ends and local executors a span per step attempt (none given: no tracing, no import).
    ``partitions`` / ``lease_ttl``: how executions are split between service instances and how
    long an instance's lease on its share lasts (every instance must use the same count).
    """

    def __init__(
        self,
        store: str | Store,
        broker: str | Broker = "memory://",
        registry: Registry | None = None,
        *,
        concurrency: int = 100,
        queues: Sequence[str] = ("default",),
        shutdown_grace: float = 10.0,
        batch_size: int = 1000,
        record_events: bool = True,
        clock: Callable[[], float] = time.time,
        tune_interpreter: bool = True,
        tracer_provider: TracerProvider | None = None,
        partitions: int = DEFAULT_PARTITIONS,
        lease_ttl: float = 10.0,
    ) -> None:
        self._owned: list[Store | Broker] = []
        self.store = store_from_url(store) if isinstance(store, str) else store
        self.broker = broker_from_url(broker) if isinstance(broker, str) else broker
        if isinstance(store, str):
            self._owned.append(self.store)
        if isinstance(broker, str):
            self._owned.append(self.broker)
        self.registry = registry
        self.concurrency = concurrency
        self.shutdown_grace = shutdown_grace
        self.catalog = Catalog(self.store)
        ownership = None
        memory_broker = isinstance(self.broker, MemoryBroker)
        if isinstance(self.store, Leases) and not memory_broker:
            owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
            ownership = Ownership(self.store, owner, partitions=partitions, ttl=lease_ttl)
        self.driver = Driver(
            self.store,
            self.broker,
            decide,
            self.catalog.resolve,
            clock=clock,
            batch_size=batch_size,
            recover=memory_broker,
            record_events=record_events,
            on_cancel_task=self._cancel_task,
            ownership=ownership,
        )
        self._queues = list(dict.fromkeys(queues))
        self._served: set[str] = set()
        self._executors: list[Executor] = []
        self._stack: AsyncExitStack | None = None
        self.tune_interpreter = tune_interpreter
        self.tracer_provider = tracer_provider
        self._spans: ExecutionSpans | None = None
        if tracer_provider is not None:  # OpenTelemetry is imported only then
            from magicflow.service.tracing import ExecutionSpans

            self._spans = ExecutionSpans(tracer_provider, self.store)
            self.driver.add_listener(self._spans.record)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Engine:
        stack = AsyncExitStack()
        await stack.__aenter__()
        if self.tune_interpreter:
            stack.callback(_tune_interpreter())
        try:
            await self.store.open()
            if self.store in self._owned:
                stack.push_async_callback(self.store.close)
            if self._spans is not None:  # after the driver's last commit, before the store closes
                stack.push_async_callback(self._spans.drain)
            await self.broker.connect()
            if self.broker in self._owned:
                stack.push_async_callback(self.broker.close)
            await stack.enter_async_context(self.driver)
            self._stack = stack
            await self._serve(self._queues)
        except BaseException as exc:
            await stack.__aexit__(type(exc), exc, exc.__traceback__)
            self._stack = None
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    async def _serve(self, queues: Sequence[str]) -> None:
        """Run a local executor for the queues not served yet (when there is a registry)."""
        new = [q for q in dict.fromkeys(queues) if q not in self._served]
        if self.registry is None or not new or self._stack is None:
            return
        executor = Executor(
            self.broker,
            self.registry,
            queues=new,
            concurrency=self.concurrency,
            shutdown_grace=self.shutdown_grace,
            tracer_provider=self.tracer_provider,
        )
        await self._stack.enter_async_context(executor)
        self._executors.append(executor)
        self._served.update(new)

    def _cancel_task(self, command: CancelTask) -> None:
        for executor in self._executors:
            if executor.cancel(command.task_id):
                return

    # ------------------------------------------------------------------ definitions

    async def register(self, plan: WorkflowPlan, source: str | None = None) -> bool:
        """Register a compiled workflow version (and serve its queues locally). True if it
        was new; False if identical content was registered already. ConflictError: same
        name and version, other content."""
        created = await self.catalog.register(plan, source)
        await self._serve([step.queue for step in plan.steps])
        return created

    async def register_file(self, path: str | os.PathLike[str]) -> WorkflowPlan:
        """Validate, compile and register a YAML file; WorkflowValidationError if invalid."""
        plan, source = await asyncio.to_thread(_read_workflow, path)
        await self.register(plan, source)
        return plan

    # ------------------------------------------------------------------ executions

    async def start(
        self,
        workflow: str,
        input: Any = None,
        *,
        version: str | None = None,
        idempotency_key: str | None = None,
        execution_id: str | None = None,
    ) -> str:
        """Start an execution; its id, once it is durably created. With an idempotency key
        already used for this workflow, the id of the execution it started."""
        plan = await self.catalog.resolve(workflow, version)
        data = {} if input is None else input
        problems = _not_json(data, "input") or validate_input(plan, data)
        if problems:
            raise WorkflowValidationError(
                [Diagnostic(f"{plan.name}@{plan.version}", 1, 1, p) for p in problems]
            )
        if idempotency_key is not None:
            existing = await self.store.find_idempotent(plan.name, idempotency_key)
            if existing is not None:
                return existing
        execution_id = execution_id or new_execution_id()
        try:
            await self.driver.start(
                plan, Start(input=data, execution_id=execution_id), idempotency_key
            )
        except ConflictError:
            if idempotency_key is not None:
                existing = await self.store.find_idempotent(plan.name, idempotency_key)
                if existing is not None:
                    return existing
            raise
        return execution_id

    async def wait(
        self,
        execution_id: str,
        timeout: float | None = None,  # noqa: ASYNC109 - part of the API the SPEC describes
    ) -> dict[str, Any]:
        """The result document (SPEC §3) once the execution has ended. TimeoutError after
        ``timeout`` seconds; NotFoundError for an unknown execution."""
        watch = self.driver.watch(execution_id)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if not self.driver.is_live(execution_id):
                        state = await self._load(execution_id)
                        if state.status.is_terminal:
                            return await self._document(state)
                    # alone, this engine sees the end; among several instances another may
                    # decide the execution, or this one may lose it: look again now and then
                    alone = self.driver.ownership is None
                    await asyncio.wait([watch], timeout=None if alone else _POLL)
                    if watch.done():
                        return await self._document(_decode_state(watch.result()))
        finally:
            if watch.cancelled() or not watch.done():
                self.driver.unwatch(execution_id, watch)

    async def run(
        self,
        workflow: str,
        input: Any = None,
        *,
        version: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Start an execution and wait for its result document."""
        execution_id = await self.start(workflow, input, version=version)
        return await self.wait(execution_id, timeout)

    async def get(self, execution_id: str) -> dict[str, Any]:
        """The execution's document as committed now."""
        return await self._document(await self._load(execution_id))

    async def list_executions(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """``{"items": [documents, newest first], "next_cursor": ...}``."""
        page = await self.store.list_executions(
            workflow=workflow, status=status, limit=limit, cursor=cursor
        )
        items = [await self._document(_decode_state(record.state)) for record in page.items]
        return {"items": items, "next_cursor": page.next_cursor}

    async def cancel(self, execution_id: str, reason: str = "cancelled by request") -> None:
        await self._control(execution_id, CancelRequested(reason))

    async def pause(self, execution_id: str) -> None:
        await self._control(execution_id, PauseRequested())

    async def resume(self, execution_id: str) -> None:
        await self._control(execution_id, ResumeRequested())

    async def retry(self, execution_id: str) -> None:
        """Run a failed, cancelled or timed-out execution again from its unfinished steps."""
        await self._control(execution_id, RetryRequested())

    async def signal(self, execution_id: str, name: str, payload: Any = None) -> None:
        """Deliver signal ``name`` (a ``wait_for`` step's output is its payload)."""
        problems = _not_json(payload, "the signal's payload")
        if problems:
            raise WorkflowValidationError([Diagnostic(f"signal {name}", 1, 1, problems[0])])
        await self._control(execution_id, SignalReceived(name, payload))

    async def _control(self, execution_id: str, event: Event) -> None:
        state = await self._load(execution_id)
        allowed = _ALLOWED[type(event)]
        if state.status not in allowed:
            raise ConflictError(
                f"execution {execution_id} is {state.status}: "
                f"{type(event).__name__.removesuffix('Requested').lower()} needs "
                + " or ".join(sorted(allowed))
            )
        await self.driver.send(execution_id, event)

    async def _load(self, execution_id: str) -> ExecutionState:
        found = await self.store.load(execution_id)
        if found is None:
            raise NotFoundError(f"no execution {execution_id!r}")
        return _decode_state(found[1])

    async def _document(self, state: ExecutionState) -> dict[str, Any]:
        try:
            plan = await self.catalog.resolve(state.workflow, state.version)
        except NotFoundError as exc:
            raise MagicFlowError(f"execution {state.id}: {exc}") from exc
        return execution_document(state, plan)


_tuned: list[tuple[tuple[int, int, int], float]] = []  # the settings before, once per engine


def _tune_interpreter() -> Callable[[], None]:
    """Settings for a process that runs engines; returns what undoes them (the last engine to
    stop restores what was there before the first one started).

    - The cyclic garbage collector runs less often: the engine keeps many long-lived objects
      (live states, futures, plans) that CPython's default thresholds rescan over and over
      (measured: a third of W1's time); what is alive at start-up is frozen out of the scans.
    - A thread waiting for the GIL gets it after 1 ms instead of 5: the store's writer thread
      needs it briefly between statements while the event loop is busy (measured: a commit
      under load goes from ~8,500 to ~11,000 transitions/s).
    """
    if not _tuned:
        gc.freeze()
    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    _tuned.append((thresholds, interval))
    gc.set_threshold(max(thresholds[0], 50_000), *thresholds[1:])
    sys.setswitchinterval(min(interval, 0.001))

    def restore() -> None:
        thresholds, interval = _tuned.pop()
        if not _tuned:
            gc.set_threshold(*thresholds)
            sys.setswitchinterval(interval)
            gc.unfreeze()

    return restore


def _not_json(value: Any, what: str) -> list[str]:
    """Why ``value`` cannot be stored as JSON (a set, a lone surrogate, ...), if it cannot:
    refused up front, since a state the store cannot encode could never be committed."""
    try:
        _encode_json(value)
    except (TypeError, ValueError, OverflowError) as exc:
        return [f"{what} is not JSON data: {exc}"]
    return []


def _read_workflow(path: str | os.PathLike[str]) -> tuple[WorkflowPlan, str]:
    plan = load_workflow(path).raise_for_diagnostics()
    with open(path, encoding="utf-8") as handle:
        return plan, handle.read()

"""The executor: takes tasks from broker queues, runs them, publishes their results.

``Executor`` is an async context manager that owns a TaskGroup: one receive loop per queue,
a heartbeat loop and the settler (``settle``), plus one asyncio task per running step.

- **Concurrency**: at most ``concurrency`` deliveries are held at once (running, or waiting
  for their result to be published); receive loops claim messages in batches sized by the
  free slots.
- **At least once**: results finished in the same loop tick are published together (one
  ``publish`` per batch, to ``RESULTS_QUEUE``) and only then are their deliveries acked. A
  crash before the ack means the task runs again after the visibility timeout; the service
  drops the duplicate result.
- **Heartbeats**: a delivery held longer than a fraction of the visibility timeout is
  extended (``broker.extend``), all due deliveries in one call.
- **Bad messages**: a body that can't be decoded is dead-lettered; a message delivered more
  than ``max_deliveries`` times gets a failed ``PoisonMessage`` result (so the service does not
  wait for it forever) and is then dead-lettered.
- **Cancellation**: ``cancel(task_id)`` cancels a running async step (a sync one is
  abandoned); no result is published for it and its delivery is acked.
- **Shutdown**, in phases: stop receiving; wait up to ``shutdown_grace`` for running steps;
  cancel the rest and nack them (they are redelivered); flush results and settlements; close.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

import msgspec

from magicflow.brokers.base import Broker, Delivery
from magicflow.errors import StepCancelled
from magicflow.executor.context import CancelFlag
from magicflow.executor.registry import Registry
from magicflow.executor.runner import Runner, failed_result
from magicflow.executor.settle import Settler
from magicflow.logs import bind_lazily as bind_log_fields
from magicflow.messages import ErrorInfo, ResultMessage, TaskMessage, decode_task

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from magicflow.executor.tracing import StepTracer

logger = logging.getLogger(__name__)


def default_executor_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(slots=True, eq=False)
class _Running:
    task: TaskMessage
    deliveries: list[Delivery]
    cancelled: CancelFlag = field(default_factory=CancelFlag)
    job: asyncio.Task[None] | None = None
    result: ResultMessage | None = None
    cancel_requested: bool = False
    raised_cancel: bool = False  # the function raised StepCancelled itself


class Executor:
    """Serves ``queues`` of ``broker`` with the functions of ``registry``.

    ``async with Executor(...) as executor:`` runs it for the body's duration (then shuts
    down gracefully); ``await executor.run_until_stopped()`` runs it until ``stop()``. The
    broker is connected and closed by whoever owns it. ``visibility_timeout`` defaults to the
    broker's own (``broker.visibility_timeout``) when it has one, else 30 s.
    ``tracer_provider``: an OpenTelemetry tracer provider; each attempt gets a span, child of
    the task's ``traceparent`` (``executor.tracing``). While a step runs, its ids are bound
    to the log records made in its context (``magicflow.logs``).
    """

    def __init__(
        self,
        broker: Broker,
        registry: Registry,
        *,
        queues: Sequence[str] = ("default",),
        concurrency: int = 100,
        executor_id: str | None = None,
        max_threads: int = 32,
        max_deliveries: int = 10,
        shutdown_grace: float = 30.0,
        visibility_timeout: float | None = None,
        heartbeat_fraction: float = 1 / 3,
        receive_wait: float = 1.0,
        max_batch: int = 100,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        if not queues:
            raise ValueError("an executor needs at least one queue")
        if concurrency < 1 or max_batch < 1 or max_deliveries < 1:
            raise ValueError("concurrency, max_batch and max_deliveries must be at least 1")
        if not 0 < heartbeat_fraction < 1:
            raise ValueError("heartbeat_fraction must be between 0 and 1")
        self.broker = broker
        self.registry = registry
        self.queues = tuple(dict.fromkeys(queues))
        self.concurrency = concurrency
        self.executor_id = executor_id or default_executor_id()
        self.max_deliveries = max_deliveries
        self.shutdown_grace = shutdown_grace
        vt = visibility_timeout or getattr(broker, "visibility_timeout", None)
        self.visibility_timeout = float(vt) if isinstance(vt, int | float) and vt > 0 else 30.0
        self.heartbeat_interval = self.visibility_timeout * heartbeat_fraction
        self.receive_wait = receive_wait
        self.max_batch = max_batch
        self._share = max(1, -(-concurrency // len(self.queues)))  # per-receive claim cap
        self._runner = Runner(registry, max_threads=max_threads, executor_id=self.executor_id)
        self._tracer: StepTracer | None = None
        if tracer_provider is not None:  # OpenTelemetry is imported only then
            from magicflow.executor.tracing import StepTracer

            self._tracer = StepTracer(tracer_provider, self.executor_id)
        self._tg: asyncio.TaskGroup | None = None
        self._lifecycle: AbstractAsyncContextManager[None] | None = None
        self._free = concurrency
        self._slot_freed = asyncio.Event()
        self._held: dict[Delivery, float] = {}  # delivery -> last received/extended (monotonic)
        self._running: dict[str, _Running] = {}
        self._settler = Settler(broker, self._release, name=self.executor_id)
        self._stop = asyncio.Event()
        self._draining = False

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Executor:
        if self._lifecycle is not None:
            raise RuntimeError("an Executor can be started only once")
        self._lifecycle = self._lifespan()
        await self._lifecycle.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._lifecycle is not None
        return await self._lifecycle.__aexit__(exc_type, exc, tb)

    async def run_until_stopped(self) -> None:
        """Run until ``stop()`` is called, then shut down gracefully."""
        async with self:
            await self._stop.wait()

    def stop(self) -> None:
        """Ask ``run_until_stopped`` to return (safe to call from a signal handler)."""
        self._stop.set()

    @property
    def running(self) -> int:
        """Steps running now."""
        return len(self._running)

    @property
    def held(self) -> int:
        """Deliveries held now: running, or waiting for their result to be published."""
        return len(self._held)

    def cancel(self, task_id: str) -> bool:
        """Best effort: stop working on ``task_id``. An async step is cancelled; a sync one is
        abandoned (its thread runs on, ``ctx.cancelled`` turns true). No result is published
        and the delivery is acked. False when the task is not running here."""
        entry = self._running.get(task_id)
        if entry is None or entry.job is None:
            return False
        entry.cancel_requested = True
        entry.cancelled.set()
        entry.job.cancel()
        return True

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        body_error: BaseException | None = None
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            receivers = [tg.create_task(self._receive_loop(q)) for q in self.queues]
            heartbeat = tg.create_task(self._heartbeat_loop())
            flusher = tg.create_task(self._settler.run())
            logger.info(
                "executor %s serving %s (concurrency %d)",
                self.executor_id,
                ", ".join(self.queues),
                self.concurrency,
            )
            try:
                yield
            except BaseException as exc:  # the caller's error: no grace period
                body_error = exc
                await self._shutdown(receivers, heartbeat, flusher, grace=0.0)
            else:
                await self._shutdown(receivers, heartbeat, flusher, grace=self.shutdown_grace)
        if body_error is not None:
            # raised outside the TaskGroup, so the caller gets it as it was, not in a group
            raise body_error

    async def _shutdown(
        self,
        receivers: list[asyncio.Task[None]],
        heartbeat: asyncio.Task[None],
        flusher: asyncio.Task[None],
        grace: float,
    ) -> None:
        self._stop.set()
        # 1. stop taking work
        for receiver in receivers:
            receiver.cancel()
        await asyncio.wait(receivers)
        # 2. grace period for the running steps
        jobs = [entry.job for entry in self._running.values() if entry.job is not None]
        if jobs and grace > 0:
            logger.info("executor %s: waiting for %d running steps", self.executor_id, len(jobs))
            await asyncio.wait(jobs, timeout=grace)
        # 3. cancel the rest: they are nacked and run again elsewhere
        self._draining = True
        jobs = [entry.job for entry in self._running.values() if entry.job is not None]
        if jobs:
            logger.info("executor %s: cancelling %d steps", self.executor_id, len(jobs))
            for job in jobs:
                job.cancel()
            await asyncio.wait(jobs)
            await asyncio.sleep(0)  # let the jobs' done callbacks settle them
        # 4. drain: publish the last results, ack and nack
        self._settler.close()
        await asyncio.wait([flusher])
        heartbeat.cancel()
        await asyncio.wait([heartbeat])
        # 5. close
        self._runner.close()
        logger.info("executor %s stopped", self.executor_id)

    # ------------------------------------------------------------------ receiving

    async def _receive_loop(self, queue: str) -> None:
        failures = 0
        while True:
            while self._free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
            want = min(self._free, self._share, self.max_batch)
            self._free -= want
            deliveries: list[Delivery] = []
            try:
                deliveries = await self.broker.receive(queue, want, self.receive_wait)
            except Exception:
                failures += 1
                logger.exception("executor %s: receive from %r failed", self.executor_id, queue)
            finally:
                self._free += want - len(deliveries)
            if not deliveries:
                if failures:
                    await asyncio.sleep(min(0.1 * 2**failures, 5.0))
                continue
            failures = 0
            now = time.monotonic()
            for delivery in deliveries:
                self._held[delivery] = now
                self._start(delivery)

    def _start(self, delivery: Delivery) -> None:
        try:
            task = decode_task(delivery.body)
        except msgspec.DecodeError as exc:
            reason = f"undecodable task message: {exc}"
            logger.error("executor %s: %s", self.executor_id, reason)
            self._settler.dead_letter(delivery, reason)
            return
        if delivery.delivery_count > self.max_deliveries:
            self._poison(delivery, task)
            return
        entry = self._running.get(task.id)
        if entry is not None:  # delivered again while it runs here: settle both together
            entry.deliveries.append(delivery)
            return
        assert self._tg is not None
        entry = _Running(task, [delivery])
        self._running[task.id] = entry
        entry.job = job = self._tg.create_task(self._process(entry))
        job.add_done_callback(functools.partial(self._finished, entry))

    def _poison(self, delivery: Delivery, task: TaskMessage) -> None:
        reason = (
            f"poison message: delivered {delivery.delivery_count} times "
            f"(max_deliveries is {self.max_deliveries})"
        )
        logger.error(
            "executor %s: task %s: %s", self.executor_id, task.id, reason, extra=_log_fields(task)
        )
        info = ErrorInfo("PoisonMessage", f"task {task.id} {reason}", non_retryable=True)
        result = failed_result(task, info, executor_id=self.executor_id)
        if self._tracer is not None:  # the trace shows why the step failed
            self._tracer.start(task).end(result)
        self._settler.result(result, [delivery], dead_letter=reason, reply_to=task.reply_to)

    # ------------------------------------------------------------------ running

    async def _process(self, entry: _Running) -> None:
        # this job's own context: what is logged while the step runs carries its ids
        bind_log_fields(functools.partial(_log_fields, entry.task))
        span = None if self._tracer is None else self._tracer.start(entry.task)
        try:
            entry.result = await self._runner.run(entry.task, cancelled=entry.cancelled)
        except StepCancelled:
            entry.raised_cancel = True
        except Exception:  # a bug of ours: don't take the whole executor down
            logger.exception("executor %s: task %s crashed", self.executor_id, entry.task.id)
        finally:
            if span is not None:
                span.end(entry.result, cancelled=entry.result is None)

    def _finished(self, entry: _Running, _job: object) -> None:
        """Done callback of a step's job: decide what happens to its deliveries."""
        self._running.pop(entry.task.id, None)
        result = entry.result
        if entry.cancel_requested:
            self._settler.ack(entry.deliveries)  # the service no longer wants it
        elif result is not None:
            self._settler.result(result, entry.deliveries, reply_to=entry.task.reply_to)
            if result.error is not None and logger.isEnabledFor(logging.INFO):
                logger.info(
                    "task %s (%s) failed: %s: %s",
                    entry.task.id,
                    entry.task.function,
                    result.error.type,
                    result.error.message,
                    extra=_log_fields(entry.task),
                )
        elif entry.raised_cancel and not self._draining:
            info = ErrorInfo("StepCancelled", "the step raised StepCancelled")
            result = failed_result(entry.task, info, executor_id=self.executor_id)
            self._settler.result(result, entry.deliveries, reply_to=entry.task.reply_to)
        else:  # shutting down, or crashed: let another consumer take it
            self._settler.nack(entry.deliveries)

    # ------------------------------------------------------------------ settling

    def _release(self, deliveries: list[Delivery]) -> None:
        freed = 0
        for delivery in deliveries:
            if self._held.pop(delivery, None) is not None:
                freed += 1
        if freed:
            self._free += freed
            self._slot_freed.set()

    # ------------------------------------------------------------------ heartbeats

    async def _heartbeat_loop(self) -> None:
        interval = self.heartbeat_interval
        while True:
            await asyncio.sleep(interval / 2)
            now = time.monotonic()
            due = [d for d, since in self._held.items() if now - since >= interval]
            if not due:
                continue
            try:
                await self.broker.extend(due, self.visibility_timeout)
            except Exception:
                logger.warning("executor %s: heartbeat failed", self.executor_id, exc_info=True)
                continue
            for delivery in due:
                if delivery in self._held:
                    self._held[delivery] = now


def _log_fields(task: TaskMessage) -> dict[str, object]:
    """The structured-log fields of a task (see ``magicflow.logs``)."""
    fields: dict[str, object] = {
        "execution_id": task.execution_id,
        "workflow": task.workflow_id,
        "step_id": task.step_id,
        "attempt": task.attempt,
        "task_id": task.id,
    }
    if task.item_index is not None:
        fields["item_index"] = task.item_index
    return fields

"""The driver: the loop that turns events into committed transitions, then acts on them.

    inbox ──► take all (≤ batch_size) ──► decide, execution by execution ──► ONE store commit
      ▲                                                                          │
      │  results (acked after their commit), timers (woken exactly when due),    ▼
      └─ requests (start, cancel, signal ...), follow-ups      publish tasks, set timers, wake
                                                               waiters, ack results

- Group commit: every transition of a batch goes in one transaction; that is where the
  throughput comes from. Nothing is published before its transition is committed; the task
  messages travel through the store's outbox, so a crash between commit and publish only
  re-publishes them (at least once); results carry their task id, so a duplicate is dropped
  by ``decide``.
- Embedded mode owns every execution: live states are cached, so a result costs no read. A
  commit conflict (another writer) evicts the cached state; its events are decided again.
- Never polls: the loop sleeps on a future woken by a new event or by the next timer's due
  time (an in-memory heap mirrors the durable timer rows).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType

import msgspec

from magicflow.brokers.base import Broker, Delivery
from magicflow.dsl.plan import WorkflowPlan
from magicflow.engine.batch import Batch, Decide, Item, Txn
from magicflow.engine.model import (
    BreakerState,
    CancelTask,
    ChildFinished,
    Emit,
    Event,
    ExecutionState,
    ExecutionStatus,
    Recover,
    Start,
    StartChild,
    TimerFired,
)
from magicflow.engine.relay import OutboxRelay, consume_results
from magicflow.engine.timers import TimerHeap
from magicflow.errors import ConflictError, MagicFlowError, NotFoundError
from magicflow.messages import ErrorInfo
from magicflow.stores.base import Store

logger = logging.getLogger(__name__)

ResolvePlan = Callable[[str, str | None], Awaitable[WorkflowPlan]]
Listener = Callable[[str, list[Emit]], None]

_decode_state = msgspec.json.Decoder(ExecutionState).decode
_decode_breaker = msgspec.json.Decoder(BreakerState).decode


class _Live:
    __slots__ = ("plan", "state", "version")

    def __init__(self, version: int, state: ExecutionState, plan: WorkflowPlan) -> None:
        self.version, self.state, self.plan = version, state, plan


class Driver:
    """``async with Driver(...) as driver:`` runs the loop, the results consumer and the relay.

    ``decide`` is ``engine.machine.decide`` (injected so the loop can be tested alone);
    ``resolve_plan(name, version or None)`` returns a compiled plan or raises NotFoundError.
    ``recover``: the broker does not keep messages (``memory://``), so on start the outbox is
    dropped and every live execution gets ``Recover`` (its awaited tasks are dispatched again).
    """

    def __init__(
        self,
        store: Store,
        broker: Broker,
        decide: Decide,
        resolve_plan: ResolvePlan,
        *,
        clock: Callable[[], float] = time.time,
        batch_size: int = 1000,
        max_inbox: int = 50_000,
        recover: bool = False,
        record_events: bool = True,
        on_cancel_task: Callable[[CancelTask], None] | None = None,
    ) -> None:
        self.store, self.broker = store, broker
        self._decide, self._resolve = decide, resolve_plan
        self._clock = clock
        self.batch_size, self.max_inbox = batch_size, max_inbox
        self._recover, self._record_events = recover, record_events
        self.on_cancel_task = on_cancel_task
        self._inbox: deque[Item] = deque()
        self._cache: dict[str, _Live] = {}
        self._breakers: dict[str, BreakerState] = {}
        self._timers = TimerHeap()
        self._done_outbox: list[int] = []
        self._relay = OutboxRelay(broker, self._done_outbox.extend)
        self._watchers: dict[str, list[asyncio.Future[bytes]]] = {}
        self._listeners: list[Listener] = []
        self._waiter: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None
        self._stopping = False
        self._tg: asyncio.TaskGroup | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._helpers: list[asyncio.Task[None]] = []
        self.transitions = 0  # committed, for metrics
        self.batches = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Driver:
        await self._start_up()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._loop_task = self._tg.create_task(self._run(), name="magicflow-driver")
        self._helpers = [
            self._tg.create_task(
                consume_results(self.broker, self.deliver, stopping=lambda: self._stopping),
                name="magicflow-results",
            ),
            self._tg.create_task(self._relay.run(), name="magicflow-relay"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Stop taking work, let the batch under way commit, then cancel the helpers."""
        assert self._tg is not None
        assert self._loop_task is not None
        self._stopping = True
        for task in self._helpers:
            task.cancel()
        self._wake()
        if exc is None:
            await asyncio.shield(self._loop_task)
        self._loop_task.cancel()
        try:
            await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            for futures in list(self._watchers.values()):
                for future in list(futures):
                    future.cancel()
        return None

    async def _start_up(self) -> None:
        self._breakers = {
            name: _decode_breaker(blob) for name, blob in (await self.store.load_breakers()).items()
        }
        for timer in await self.store.all_timers():
            self._timers.set(timer.execution_id, timer.key, timer.due)
        if not self._recover:
            republished = await self._relay.republish(self.store)
            if republished:
                logger.info("re-published %d task(s) left in the outbox", republished)
            return
        while pending := await self.store.pending_outbox(1000):
            await self.store.delete_outbox([m.id for m in pending])
        live = await self.store.non_terminal_executions()
        self._inbox.extend(Item(execution_id, Recover()) for execution_id in live)
        if live:
            logger.info("recovering %d live execution(s)", len(live))

    # ------------------------------------------------------------------ requests

    async def start(self, plan: WorkflowPlan, event: Start, idempotency_key: str | None) -> None:
        """Create an execution; returns once it is committed. ConflictError: the id (or the
        idempotency key of this workflow) is taken."""
        future = asyncio.get_running_loop().create_future()
        self._put(
            Item(
                event.execution_id, event, plan=plan, future=future, idempotency_key=idempotency_key
            )
        )
        await future

    async def send(self, execution_id: str, event: Event) -> None:
        """Apply ``event``; returns once committed. NotFoundError for an unknown execution."""
        future = asyncio.get_running_loop().create_future()
        self._put(Item(execution_id, event, future=future))
        await future

    async def deliver(self, items: list[Item]) -> None:
        """Queue events (results); waits while the inbox is over ``max_inbox`` (backpressure)."""
        self._inbox.extend(items)
        self._wake()
        while len(self._inbox) > self.max_inbox and not self._stopping:
            self._room = asyncio.get_running_loop().create_future()
            await self._room

    def watch(self, execution_id: str) -> asyncio.Future[bytes]:
        """A future for the state (encoded) the execution has when its next transition into a
        terminal status commits."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(execution_id, []).append(future)
        future.add_done_callback(lambda f: self._unwatch(execution_id, f))
        return future

    def _unwatch(self, execution_id: str, future: asyncio.Future[bytes]) -> None:
        futures = self._watchers.get(execution_id)
        if futures and future in futures:
            futures.remove(future)
            if not futures:
                del self._watchers[execution_id]

    def is_live(self, execution_id: str) -> bool:
        """True while this driver holds the execution's live state: its end will be seen by
        ``watch`` without reading the store."""
        return execution_id in self._cache

    def add_listener(self, listener: Listener) -> None:
        """``listener(execution_id, emits)`` after each committed transition that emitted."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def wake(self) -> None:
        """Look at the timers again now (for a clock that is moved by hand in tests)."""
        self._wake()

    def _put(self, item: Item) -> None:
        if self._stopping:
            raise MagicFlowError("the engine is shutting down")
        self._inbox.append(item)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        inbox = self._inbox
        while True:
            for execution_id, key in self._timers.pop_due(self._clock()):
                inbox.append(Item(execution_id, TimerFired(key)))
            if inbox:
                count = min(len(inbox), self.batch_size)
                await self._process([inbox.popleft() for _ in range(count)])
                self._make_room()
            elif self._done_outbox:
                done, self._done_outbox[:] = list(self._done_outbox), []
                await self.store.delete_outbox(done)
            elif self._stopping:
                return
            else:
                await self._sleep()

    async def _sleep(self) -> None:
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        due = self._timers.next_due()
        handle = None
        if due is not None:
            handle = loop.call_later(max(0.0, due - self._clock()), self._wake)
        try:
            await waiter
        finally:
            self._waiter = None
            if handle is not None:
                handle.cancel()

    def _make_room(self) -> None:
        room = self._room
        if room is not None and not room.done() and len(self._inbox) <= self.max_inbox // 2:
            room.set_result(None)

    async def _process(self, items: list[Item]) -> None:
        batch = Batch(self._decide, self._clock(), self._breakers, self._record_events)
        queue = deque(items)
        while queue:
            await self._load(batch, queue)
            while queue:
                self._decide_one(batch, queue.popleft())
            queue.extend(batch.follow_ups)
            batch.follow_ups.clear()
            queue.extend(await self._child_starts(batch))
        transitions = batch.transitions()
        done, self._done_outbox[:] = list(self._done_outbox), []
        try:
            result = await self.store.commit(transitions, done)
        except Exception:
            logger.exception("committing %d transition(s) failed; retrying", len(transitions))
            self._done_outbox.extend(done)
            self._retry(batch)
            await asyncio.sleep(0.5)
            return
        self.batches += 1
        self.transitions += len(transitions) - len(result.conflicts)
        acks = self._settle(batch, result.conflicts)
        if result.outbox:
            self._done_outbox.extend(await self._relay.publish(result.outbox))
        if acks:
            await self._ack(acks)

    async def _load(self, batch: Batch, queue: Iterable[Item]) -> None:
        """Bring the states the batch needs (and their plans) into the cache."""
        cache, txns = self._cache, batch.txns
        missing = {
            item.execution_id
            for item in queue
            if item.execution_id not in cache
            and item.execution_id not in txns
            and not isinstance(item.event, Start)
        }
        if not missing:
            return
        for execution_id, (version, blob) in (await self.store.load_many(list(missing))).items():
            state = _decode_state(blob)
            try:
                plan = await self._resolve(state.workflow, state.version)
            except NotFoundError:
                logger.error(
                    "execution %s: workflow %s@%s is not registered",
                    execution_id,
                    state.workflow,
                    state.version,
                )
                continue
            cache[execution_id] = _Live(version, state, plan)

    def _decide_one(self, batch: Batch, item: Item) -> None:
        execution_id, event = item.execution_id, item.event
        txn = batch.txns.get(execution_id)
        if txn is None:
            live = self._cache.get(execution_id)
            if live is not None:
                txn = Txn(execution_id, live.state, live.version, live.plan)
            elif isinstance(event, Start) and item.plan is not None:
                txn = Txn(execution_id, None, 0, item.plan)
            else:
                _fail(item, NotFoundError(f"no execution {execution_id!r}"))
                batch.dropped.append(item)
                return
            batch.txns[execution_id] = txn
        if isinstance(event, Start) and txn.state is not None:
            _fail(item, ConflictError(f"execution {execution_id!r} already exists"))
            batch.dropped.append(item)
            return
        try:
            batch.apply(txn, item)
        except Exception as exc:  # decide is total; this is a bug: keep the loop alive
            logger.exception(
                "deciding %s for execution %s failed", type(event).__name__, execution_id
            )
            _fail(item, exc)
            batch.dropped.append(item)
            del batch.txns[execution_id]
            self._cache.pop(execution_id, None)
            self._inbox.extendleft(reversed(txn.items))

    async def _child_starts(self, batch: Batch) -> list[Item]:
        items: list[Item] = []
        for parent_id, command in batch.child_starts:
            try:
                plan = await self._resolve(command.workflow, command.version)
            except NotFoundError as exc:
                items.append(Item(parent_id, _child_failed(command, exc)))
                continue
            start = Start(
                input=command.input,
                deadline=command.deadline,
                parent_id=parent_id,
                parent_step_id=command.parent_step_id,
                execution_id=command.child_id,
            )
            items.append(Item(command.child_id, start, plan=plan))
        batch.child_starts.clear()
        return items

    # ------------------------------------------------------------------ after the commit

    def _settle(self, batch: Batch, conflicts: set[str]) -> list[Delivery]:
        """Update the cache, timers and waiters; the deliveries to ack."""
        acks: list[Delivery] = [i.delivery for i in batch.dropped if i.delivery is not None]
        requeue: list[Item] = []
        for execution_id, txn in batch.txns.items():
            if not txn.items:
                continue
            if execution_id in conflicts:
                self._cache.pop(execution_id, None)
                for item in txn.items:
                    if isinstance(item.event, Start) and txn.expected == 0:
                        _fail(
                            item,
                            ConflictError(
                                f"execution {execution_id!r} exists, or its idempotency key "
                                "is taken"
                            ),
                        )
                    else:
                        requeue.append(item)
                continue
            self._applied(txn)
            for item in txn.items:
                if item.delivery is not None:
                    acks.append(item.delivery)
                if item.future is not None and not item.future.done():
                    item.future.set_result(None)
        if requeue:
            logger.info("%d transition(s) conflicted; deciding again", len(conflicts))
            self._inbox.extendleft(reversed(requeue))
        return acks

    def _applied(self, txn: Txn) -> None:
        execution_id, state = txn.execution_id, txn.state
        assert state is not None
        assert txn.transition is not None
        if txn.terminal:
            self._cache.pop(execution_id, None)
            for future in self._watchers.get(execution_id, ()):
                if not future.done():
                    future.set_result(txn.transition.state)
        else:
            self._cache[execution_id] = _Live(txn.expected + 1, state, txn.plan)
        timers = self._timers
        for key in txn.timers_del:
            timers.cancel(execution_id, key)
        for key, due in txn.timers_set.items():
            timers.set(execution_id, key, due)
        if txn.cancel_tasks and self.on_cancel_task is not None:
            for command in txn.cancel_tasks:
                self.on_cancel_task(command)
        if txn.emits:
            for listener in self._listeners:
                listener(execution_id, txn.emits)

    def _retry(self, batch: Batch) -> None:
        """The commit failed as a whole: forget what was decided, decide it all again."""
        items: list[Item] = []
        for execution_id, txn in batch.txns.items():
            self._cache.pop(execution_id, None)
            items.extend(txn.items)
        self._inbox.extendleft(reversed(items))

    async def _ack(self, deliveries: list[Delivery]) -> None:
        try:
            await self.broker.ack(deliveries)
        except Exception:
            logger.warning(
                "acking %d result(s) failed; they will be delivered again", len(deliveries)
            )


def _fail(item: Item, exc: BaseException) -> None:
    if item.future is not None and not item.future.done():
        item.future.set_exception(exc)


def _child_failed(command: StartChild, exc: Exception) -> ChildFinished:
    return ChildFinished(
        child_id=command.child_id,
        parent_step_id=command.parent_step_id,
        status=ExecutionStatus.FAILED,
        error=ErrorInfo(type=type(exc).__name__, message=str(exc), step_id=command.parent_step_id),
    )

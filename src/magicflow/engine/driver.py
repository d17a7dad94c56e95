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
- Pipelined: batch N+1 is decided (``engine.deciding``) while batch N commits on the store's
  thread; N+1 is submitted once N has committed and been acted on.
- Embedded mode owns every execution: live states are cached, so a result costs no read. A
  commit conflict (another writer) evicts the cached state; its events are decided again.
- Never polls: the loop sleeps on a future woken by a new event or by the next timer's due
  time (an in-memory heap mirrors the durable timer rows).
- Several instances over one store (``ownership``): each decides the executions of the
  partitions it holds a lease on. It consumes those partitions' results queues (tasks name
  theirs in ``reply_to``; one read for all when the broker can), loads their timers from the
  store as they come due (another instance may have set them), and re-publishes outbox rows
  another instance left behind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType

import msgspec

from magicflow.brokers.base import RESULTS_QUEUE, Broker, Delivery, receives_any
from magicflow.dsl.plan import WorkflowPlan
from magicflow.engine.batch import Batch, Decide, DeliveriesOf, Item, Txn
from magicflow.engine.deciding import Decider, ResolvePlan, fail
from magicflow.engine.model import (
    BreakerState,
    CancelTask,
    Emit,
    Event,
    Recover,
    Start,
    TimerFired,
)
from magicflow.engine.ownership import Ownership
from magicflow.engine.partitions import partition_of, results_queue
from magicflow.engine.relay import OutboxRelay, consume_results
from magicflow.engine.timers import TimerHeap, TimerId
from magicflow.errors import ConflictError, MagicFlowError
from magicflow.faults import crash_point
from magicflow.stores.base import CommitResult, Store

logger = logging.getLogger(__name__)

Listener = Callable[[str, list[Emit]], None]
_Inflight = tuple[Batch, list[int], asyncio.Future[CommitResult], float]

_decode_breaker = msgspec.json.Decoder(BreakerState).decode
RETRY_DELAY = 0.5  # seconds before the loop tries the store again after it failed


class Driver:
    """``async with Driver(...) as driver:`` runs the loop, the results consumer and the relay.

    ``decide`` is ``engine.machine.decide`` (injected so the loop can be tested alone);
    ``resolve_plan(name, version or None)`` returns a compiled plan or raises NotFoundError.
    ``recover``: the broker does not keep messages (``memory://``), so on start the outbox is
    dropped and every live execution gets ``Recover`` (its awaited tasks are dispatched again).
    ``ownership``: several service instances share the store (see the module docstring);
    ``timer_poll`` and ``outbox_sweep`` (seconds) pace their store reads.
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
        ownership: Ownership | None = None,
        timer_poll: float = 1.0,
        outbox_sweep: float = 5.0,
    ) -> None:
        if ownership is not None and recover:
            raise ValueError("a driver that recovers owns every execution: no ownership")
        self.store, self.broker = store, broker
        self._decider = Decider(store, decide, resolve_plan, record_events=record_events)
        self._clock = clock
        self.batch_size, self.max_inbox = batch_size, max_inbox
        self._recover = recover
        self.on_cancel_task = on_cancel_task
        self._inbox: deque[Item] = deque()
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
        self._inflight: _Inflight | None = None
        self._helpers: list[asyncio.Task[None]] = []
        self.ownership = ownership
        self.timer_poll, self.outbox_sweep = timer_poll, outbox_sweep
        self._unsure = False  # a commit failed: it may have been applied all the same
        self._consumers: dict[int, asyncio.Task[None]] = {}  # partition -> results consumer
        self._fired: dict[TimerId, float] = {}  # timers fired lately, with their due time
        if ownership is not None:
            count = ownership.partitions
            self._decider.reply_to = lambda eid: results_queue(partition_of(eid, count))
            ownership.on_change = self._partitions_changed
        self.transitions = 0  # committed, for metrics
        self.batches = 0
        self.timings = {"decide": 0.0, "commit": 0.0, "act": 0.0}  # seconds, cumulative

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Driver:
        await self._start_up()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._loop_task = self._tg.create_task(self._run(), name="magicflow-driver")
        self._helpers = [self._tg.create_task(self._relay.run(), name="magicflow-relay")]
        if not self._recover:
            sweep = self._tg.create_task(self._sweep_outbox(), name="magicflow-outbox")
            self._helpers.append(sweep)
        if self.ownership is None:
            self._helpers.append(self._consume(RESULTS_QUEUE))
        else:
            await self.ownership.renew()
            if receives_any(self.broker):  # one reader for every partition's results queue
                self._helpers.append(self._consume(RESULTS_QUEUE, self._results_queues))
            self._helpers += [
                self._tg.create_task(self.ownership.run(), name="magicflow-leases"),
                self._tg.create_task(self._poll_timers(), name="magicflow-timers"),
            ]
        return self

    def _consume(
        self, queue: str, queues: Callable[[], list[str]] | None = None
    ) -> asyncio.Task[None]:
        assert self._tg is not None
        return self._tg.create_task(
            consume_results(
                self.broker,
                self.deliver,
                queue=queue,
                queues=queues,
                stopping=lambda: self._stopping,
            ),
            name=f"magicflow-results:{queue}",
        )

    def _results_queues(self) -> list[str]:
        assert self.ownership is not None
        return [results_queue(partition) for partition in sorted(self.ownership.held)]

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Stop taking work, let the batch under way commit, then cancel the helpers. The
        caller's own error leaves as itself (not inside an ExceptionGroup)."""
        assert self._tg is not None
        assert self._loop_task is not None
        self._stopping = True
        for task in [*self._helpers, *self._consumers.values()]:
            task.cancel()
        self._wake()
        if exc is None:
            await asyncio.shield(self._loop_task)
        self._loop_task.cancel()
        try:
            await self._tg.__aexit__(None, None, None)
        finally:
            if self._inflight is not None:  # let the store finish what it is writing
                commit = self._inflight[2]
                self._inflight = None
                await asyncio.wait([commit])
                if not commit.cancelled() and commit.exception() is not None:
                    logger.error("the last commit failed: %s", commit.exception())
            for futures in list(self._watchers.values()):
                for future in list(futures):
                    future.cancel()
            if self.ownership is not None:
                await self._release()
        return None

    async def _release(self) -> None:
        """Hand the partitions over now rather than when their leases expire."""
        assert self.ownership is not None
        try:
            await self.ownership.release()
        except Exception:
            logger.warning(
                "releasing the partition leases failed; they expire on their own", exc_info=True
            )

    async def _start_up(self) -> None:
        breakers = await self.store.load_breakers()
        self._decider.breakers.update(
            (name, _decode_breaker(blob)) for name, blob in breakers.items()
        )
        if self.ownership is None:  # with ownership, timers are read as they come due
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
        crash_point("result_received")
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
        return future

    def unwatch(self, execution_id: str, future: asyncio.Future[bytes]) -> None:
        """Stop watching (a ``watch`` future that was given up before it was resolved)."""
        future.cancel()
        futures = self._watchers.get(execution_id)
        if futures and future in futures:
            futures.remove(future)
            if not futures:
                del self._watchers[execution_id]

    def owns(self, execution_id: str) -> bool:
        """Whether this driver decides the execution (always, without ownership): if not,
        another instance does, and ``watch`` does not see it end."""
        return self.ownership is None or self.ownership.owns(execution_id)

    def is_live(self, execution_id: str) -> bool:
        """True while this driver holds the execution's live state: its end will be seen by
        ``watch`` without reading the store."""
        return execution_id in self._decider.cache

    def add_listener(self, listener: Listener) -> None:
        """``listener(execution_id, emits)`` after each committed transition that emitted."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def set_deliveries(self, source: DeliveriesOf | None) -> None:
        """``source(transition, emits)``: the deliveries of what a transition emitted (to
        webhooks, event streams), committed in the same transaction as the transition, so
        that a crash cannot lose them. Called while deciding: it must be quick and not fail."""
        self._decider.deliveries_of = source

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
        """Decide batch N+1 while batch N commits (on the store's thread); settle N, then
        submit N+1. Nothing of N+1 is published before N+1 itself has committed."""
        inbox = self._inbox
        while True:
            for execution_id, key in self._timers.pop_due(self._clock()):
                if self.ownership is not None:
                    self._fired[(execution_id, key)] = self._clock()
                inbox.append(Item(execution_id, TimerFired(key)))
            batch: Batch | None = None
            if inbox:
                batch = await self._decide_next()
                if batch is None:
                    continue
            if self._inflight is not None:
                await self._finish(batch)
            if batch is not None:
                self._submit(batch)
            elif self._inflight is not None or inbox:
                continue
            elif self._done_outbox:
                await self._delete_done_outbox()
            elif self._stopping:
                return
            else:
                await self._sleep()

    async def _decide_next(self) -> Batch | None:
        """Decide the next batch from the inbox. None when a read of the store failed (its
        server is down): the events are back in the inbox, their cached states dropped (a
        batch may have been half-decided on them: the store has the truth, and results stay
        unacknowledged until applied), and they are decided again after a pause."""
        inbox = self._inbox
        began = time.perf_counter()
        items = [inbox.popleft() for _ in range(min(len(inbox), self.batch_size))]
        try:
            batch = await self._decider.decide_batch(items, self._clock())
        except Exception:
            logger.exception("deciding %d event(s) failed; retrying", len(items))
            self._decider.forget({item.execution_id for item in items})
            inbox.extendleft(reversed(items))
            await asyncio.sleep(RETRY_DELAY)
            return None
        if self._decider.redo:
            inbox.extendleft(reversed(self._decider.redo))
            self._decider.redo.clear()
        self.timings["decide"] += time.perf_counter() - began
        self._make_room()
        return batch

    async def _delete_done_outbox(self) -> None:
        done, self._done_outbox[:] = list(self._done_outbox), []
        try:
            await self.store.delete_outbox(done)
        except Exception:
            logger.warning("deleting %d published outbox row(s) failed; retrying", len(done))
            self._done_outbox.extend(done)
            await asyncio.sleep(RETRY_DELAY)

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

    # ------------------------------------------------------------------ committing

    def _submit(self, batch: Batch) -> None:
        transitions = batch.transitions()
        done, self._done_outbox[:] = list(self._done_outbox), []
        crash_point("before_commit")
        commit = asyncio.ensure_future(self.store.commit(transitions, done))
        self._inflight = (batch, done, commit, time.perf_counter())

    async def _finish(self, following: Batch | None) -> None:
        """Wait for the commit in flight and act on it; ``following`` (decided on top of it,
        not submitted yet) loses what was decided on a state that did not commit."""
        assert self._inflight is not None
        batch, done, commit, began = self._inflight
        try:
            result = await asyncio.shield(commit)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._inflight = None
            logger.exception("committing a batch failed; deciding it again")
            self._unsure = True  # the store may have applied it before the connection broke
            self._done_outbox.extend(done)
            self._redo(batch, following, set(batch.txns), conflicted=False)
            await asyncio.sleep(RETRY_DELAY)
            return
        self._inflight = None
        crash_point("after_commit")
        settled = time.perf_counter()
        self.timings["commit"] += settled - began
        self.batches += 1
        self.transitions += sum(1 for t in batch.txns.values() if t.transition) - len(
            result.conflicts
        )
        acks = self._settle(batch, result.conflicts)
        if result.conflicts:
            self._redo(batch, following, result.conflicts, conflicted=True)
        if result.outbox:
            self._done_outbox.extend(await self._relay.publish(result.outbox))
            crash_point("after_publish")
        if acks:
            await self._ack(acks)
        self.timings["act"] += time.perf_counter() - settled

    def _settle(self, batch: Batch, conflicts: set[str]) -> list[Delivery]:
        """Update the cache, timers and waiters for what committed; the deliveries to ack."""
        acks: list[Delivery] = [i.delivery for i in batch.dropped if i.delivery is not None]
        for execution_id, txn in batch.txns.items():
            if not txn.items or execution_id in conflicts:
                continue
            self._applied(txn)
            for item in txn.items:
                if item.delivery is not None:
                    acks.append(item.delivery)
                if item.future is not None and not item.future.done():
                    item.future.set_result(None)
        return acks

    def _applied(self, txn: Txn) -> None:
        execution_id = txn.execution_id
        assert txn.transition is not None
        if txn.terminal:
            self._decider.ended(txn)
            for future in self._watchers.pop(execution_id, ()):
                if not future.done():
                    future.set_result(txn.transition.state)
        if not self.owns(execution_id):  # decided here on request; its owner decides the rest
            self._decider.forget([execution_id])
        timers = self._timers
        for key in txn.timers_del:
            timers.cancel(execution_id, key)
        if txn.timers_set and self.owns(execution_id):  # else its owner reads them
            for key, due in txn.timers_set.items():
                timers.set(execution_id, key, due)
        if txn.cancel_tasks and self.on_cancel_task is not None:
            for command in txn.cancel_tasks:
                self.on_cancel_task(command)
        if txn.emits:
            for listener in self._listeners:
                listener(execution_id, txn.emits)

    def _redo(
        self, batch: Batch, following: Batch | None, failed: set[str], *, conflicted: bool
    ) -> None:
        """Transitions in ``failed`` did not commit: forget their states and decide their
        events again (creates that conflicted fail instead: the id or key is taken)."""
        requeue: list[Item] = []
        self._decider.forget(failed)
        for source in (batch, following):
            if source is None:
                continue
            for execution_id in failed & source.txns.keys():
                txn = source.txns.pop(execution_id)
                for item in txn.items:
                    if (
                        conflicted
                        and source is batch
                        and isinstance(item.event, Start)
                        and txn.expected == 0
                    ):
                        fail(
                            item,
                            ConflictError(
                                f"execution {execution_id!r} exists, or its idempotency "
                                "key is taken"
                            ),
                        )
                    else:
                        requeue.append(item)
        if requeue:
            logger.info("%d transition(s) did not commit; deciding them again", len(failed))
            self._inbox.extendleft(reversed(requeue))

    # ------------------------------------------------------------------ several instances

    def _partitions_changed(self, gained: set[int], lost: set[int]) -> None:
        """Consume the results of the partitions gained; forget all about the lost ones."""
        assert self.ownership is not None
        count = self.ownership.partitions
        for partition in lost:
            consumer = self._consumers.pop(partition, None)
            if consumer is not None:
                consumer.cancel()
                if not self._stopping and self._tg is not None:
                    self._tg.create_task(self._give_back(partition, consumer))
        if lost:

            def gone(execution_id: str) -> bool:
                return partition_of(execution_id, count) in lost

            self._timers.drop(gone)
            self._decider.forget([eid for eid in self._decider.cache if gone(eid)])
        if self._stopping or self._tg is None or receives_any(self.broker):
            return
        for partition in gained:
            if partition not in self._consumers:
                self._consumers[partition] = self._consume(results_queue(partition))

    async def _give_back(self, partition: int, consumer: asyncio.Task[None]) -> None:
        """Once the results consumer of a lost partition has ended, let the broker requeue the
        results it delivered ahead to this process (``stop_receiving``, where the broker has
        it: RabbitMQ pushes messages, and would keep them here, unacknowledged, away from the
        partition's new owner), unless the partition came back meanwhile."""
        await asyncio.wait([consumer])
        stop_receiving = getattr(self.broker, "stop_receiving", None)
        if stop_receiving is None or partition in self._consumers:
            return
        try:
            await stop_receiving(results_queue(partition))
        except Exception:
            logger.warning("giving back the results of partition %d failed", partition)

    async def _poll_timers(self) -> None:
        """Put the timers of our partitions that come due soon into the heap: set by another
        instance, or by the one that held the partition before."""
        assert self.ownership is not None
        owns, timers, fired = self.ownership.owns, self._timers, self._fired
        while True:
            now = self._clock()
            try:
                due = await self.store.due_timers(now + 2 * self.timer_poll, 10_000)
            except Exception:
                logger.warning("reading due timers failed; retrying", exc_info=True)
                due = []
            added = False
            for timer in due:
                tid = (timer.execution_id, timer.key)
                if tid in fired or timers.due_of(*tid) == timer.due or not owns(tid[0]):
                    continue
                timers.set(timer.execution_id, timer.key, timer.due)
                added = True
            for tid in [t for t, at in fired.items() if at < now - 60]:
                del fired[tid]
            if added:
                self._wake()
            await asyncio.sleep(self.timer_poll)

    async def _sweep_outbox(self) -> None:
        """Publish outbox rows still there one sweep after we first saw them (at least once:
        a duplicate task is harmless). Their writer died between commit and publish, or a
        commit reported as failed had been applied (the store's server went away before it
        answered): its rows, and its timers, which are read again then, are nobody's."""
        seen: set[int] = set()
        while True:
            await asyncio.sleep(self.outbox_sweep)
            try:
                if self._unsure and self.ownership is None:  # else timers are polled anyway
                    for timer in await self.store.all_timers():
                        if self._timers.due_of(timer.execution_id, timer.key) != timer.due:
                            self._timers.set(timer.execution_id, timer.key, timer.due)
                    self._unsure = False
                    self._wake()
                pending = await self.store.pending_outbox(1000)
            except Exception:
                logger.warning("reading the outbox failed; retrying", exc_info=True)
                continue
            done = set(self._done_outbox)
            stale = [m for m in pending if m.id in seen and m.id not in done]
            seen = {m.id for m in pending}
            if stale:
                logger.info("re-publishing %d task(s) left in the outbox", len(stale))
                self._done_outbox.extend(await self._relay.publish(stale))
                self._wake()

    async def _ack(self, deliveries: list[Delivery]) -> None:
        try:
            await self.broker.ack(deliveries)
        except Exception:
            logger.warning("acking %d result(s) failed; they come again", len(deliveries))

"""Deciding a batch: the live states (cached), the plans, and ``decide`` applied item by item.

The cache holds, for each live execution this process drives, the state as last *decided*
and the version it will have once every decided transition has committed: the driver decides
batch N+1 while batch N commits. A transition that does not commit (a conflict with another
writer, a failed commit) makes the driver ``forget`` the state; the next event reloads it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

import msgspec

from magicflow.dsl.plan import WorkflowPlan
from magicflow.engine.batch import Batch, Decide, DeliveriesOf, Item, Txn
from magicflow.engine.model import (
    BreakerState,
    ChildFinished,
    ExecutionState,
    ExecutionStatus,
    Start,
    StartChild,
)
from magicflow.errors import ConflictError, NotFoundError
from magicflow.messages import ErrorInfo
from magicflow.stores.base import Store

logger = logging.getLogger(__name__)

ResolvePlan = Callable[[str, str | None], Awaitable[WorkflowPlan]]

_decode_state = msgspec.json.Decoder(ExecutionState).decode


class Live:
    __slots__ = ("plan", "state", "version")

    def __init__(self, version: int, state: ExecutionState, plan: WorkflowPlan) -> None:
        self.version, self.state, self.plan = version, state, plan


class Decider:
    def __init__(
        self,
        store: Store,
        decide: Decide,
        resolve_plan: ResolvePlan,
        *,
        record_events: bool = True,
    ) -> None:
        self.store = store
        self._decide, self._resolve = decide, resolve_plan
        self.record_events = record_events
        self.cache: dict[str, Live] = {}
        self.breakers: dict[str, BreakerState] = {}
        self.redo: list[Item] = []  # items to decide again (their state was half-decided)
        self.reply_to: Callable[[str], str] | None = None  # see ``Batch.reply_to``
        self.deliveries_of: DeliveriesOf | None = None  # see ``Driver.set_deliveries``

    def forget(self, execution_ids: Iterable[str]) -> None:
        for execution_id in execution_ids:
            self.cache.pop(execution_id, None)

    def ended(self, txn: Txn) -> None:
        """``txn`` committed a terminal status: drop the state unless more was decided since."""
        live = self.cache.get(txn.execution_id)
        if live is not None and live.version == txn.expected + 1:
            del self.cache[txn.execution_id]

    async def decide_batch(self, items: list[Item], now: float) -> Batch:
        batch = Batch(
            self._decide,
            now,
            self.breakers,
            self.record_events,
            self.reply_to,
            self.deliveries_of,
        )
        queue = deque(items)
        while queue:
            await self._load(batch, queue)
            while queue:
                self._decide_one(batch, queue.popleft())
            queue.extend(batch.follow_ups)
            batch.follow_ups.clear()
            queue.extend(await self._child_starts(batch))
        cache = self.cache
        for execution_id, txn in batch.txns.items():  # the cache runs ahead of the store
            if txn.items and txn.state is not None:
                cache[execution_id] = Live(txn.expected + 1, txn.state, txn.plan)
        return batch

    async def _load(self, batch: Batch, queue: Iterable[Item]) -> None:
        """Bring the states the batch needs (and their plans) into the cache."""
        cache, txns = self.cache, batch.txns
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
                    extra={"execution_id": execution_id},
                )
                continue
            cache[execution_id] = Live(version, state, plan)

    def _decide_one(self, batch: Batch, item: Item) -> None:
        execution_id, event = item.execution_id, item.event
        txn = batch.txns.get(execution_id)
        if txn is None:
            live = self.cache.get(execution_id)
            if live is not None:
                txn = Txn(execution_id, live.state, live.version, live.plan)
            elif isinstance(event, Start) and item.plan is not None:
                txn = Txn(execution_id, None, 0, item.plan)
            else:
                fail(item, NotFoundError(f"no execution {execution_id!r}"))
                batch.dropped.append(item)
                return
            batch.txns[execution_id] = txn
        if isinstance(event, Start) and txn.state is not None:
            fail(item, ConflictError(f"execution {execution_id!r} already exists"))
            batch.dropped.append(item)
            return
        try:
            batch.apply(txn, item)
        except Exception as exc:  # decide is total; this is a bug: keep the loop alive
            logger.exception(
                "deciding %s for %s failed",
                type(event).__name__,
                execution_id,
                extra={"execution_id": execution_id},
            )
            fail(item, exc)
            batch.dropped.append(item)
            del batch.txns[execution_id]
            self.cache.pop(execution_id, None)
            self.redo.extend(txn.items)

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


def fail(item: Item, exc: BaseException) -> None:
    """Settle ``item``'s requester with an error (its event was not applied)."""
    if item.future is not None and not item.future.done():
        item.future.set_exception(exc)


def _child_failed(command: StartChild, exc: Exception) -> ChildFinished:
    return ChildFinished(
        child_id=command.child_id,
        parent_step_id=command.parent_step_id,
        status=ExecutionStatus.FAILED,
        error=ErrorInfo(type=type(exc).__name__, message=str(exc), step_id=command.parent_step_id),
    )

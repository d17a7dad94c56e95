"""One group commit's worth of work: the events taken from the inbox, decided execution by
execution, and folded into one ``Transition`` per execution.

The driver feeds events in; ``decide`` turns each into a new state and commands; commands that
touch the world (tasks, timers, breakers, lifecycle events) are folded into the execution's
transition, and commands addressed to another execution (start a child, notify a parent,
cancel a child) come back as follow-up events *in the same batch*, so that a parent and its
child change together in one database transaction: a crash can't lose a child's start or a
child's end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from magicflow.brokers.base import Delivery
from magicflow.dsl.plan import WorkflowPlan
from magicflow.engine.model import (
    BreakerState,
    CancelChild,
    CancelRequested,
    CancelTask,
    CancelTimer,
    Command,
    Decision,
    DispatchTask,
    Emit,
    Event,
    ExecutionState,
    NotifyParent,
    Start,
    StartChild,
    StartTimer,
    TimerFired,
    UpdateBreaker,
)
from magicflow.stores.base import TERMINAL_STATUSES, DeliveryRecord, Transition

logger = logging.getLogger(__name__)

Decide = Callable[
    [ExecutionState | None, Event, WorkflowPlan, float, Mapping[str, BreakerState]], Decision
]

# the deliveries (to webhooks, event streams) of what a transition emitted, committed with it
DeliveriesOf = Callable[[Transition, list[Emit]], Sequence[DeliveryRecord]]

_encode = msgspec.json.Encoder().encode


class Item:
    """An event waiting in the inbox, with what to settle once its transition commits."""

    __slots__ = ("delivery", "event", "execution_id", "future", "idempotency_key", "plan")

    def __init__(
        self,
        execution_id: str,
        event: Event,
        *,
        plan: WorkflowPlan | None = None,
        delivery: Delivery | None = None,
        future: Any = None,  # asyncio.Future[None] | None
        idempotency_key: str | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.event = event
        self.plan = plan  # Start: the plan to start
        self.delivery = delivery  # TaskResult: ack after the commit
        self.future = future  # resolved after the commit (or failed)
        self.idempotency_key = idempotency_key


class Txn:
    """One execution's step forward within a batch."""

    __slots__ = (
        "cancel_tasks",
        "emits",
        "execution_id",
        "expected",
        "idempotency_key",
        "items",
        "outbox",
        "plan",
        "state",
        "timers_del",
        "timers_set",
        "transition",
    )

    def __init__(
        self, execution_id: str, state: ExecutionState | None, expected: int, plan: WorkflowPlan
    ) -> None:
        self.execution_id = execution_id
        self.state = state
        self.expected = expected
        self.plan = plan
        self.items: list[Item] = []
        self.outbox: list[tuple[str, bytes]] = []
        self.timers_set: dict[str, float] = {}
        self.timers_del: set[str] = set()
        self.emits: list[Emit] = []
        self.cancel_tasks: list[CancelTask] = []
        self.idempotency_key: str | None = None
        self.transition: Transition | None = None

    @property
    def terminal(self) -> bool:
        """Whether the transition this commits ends the execution. Read from the transition,
        not from ``state``: the driver decides the next batch while this one commits, and
        ``decide`` updates that same state object in place."""
        return self.transition is not None and self.transition.status in TERMINAL_STATUSES


class Batch:
    """The transactions of one group commit, keyed by execution, in the order first touched."""

    def __init__(
        self,
        decide: Decide,
        now: float,
        breakers: dict[str, BreakerState],
        record_events: bool = True,
        reply_to: Callable[[str], str] | None = None,
        deliveries_of: DeliveriesOf | None = None,
    ) -> None:
        self.decide = decide
        self.reply_to = reply_to  # execution id -> the results queue its tasks name
        self.deliveries_of = deliveries_of
        self.now = now
        self.breakers = breakers
        self.record_events = record_events
        self.txns: dict[str, Txn] = {}
        self.follow_ups: list[Item] = []  # events for other executions, same batch
        self.child_starts: list[tuple[str, StartChild]] = []  # (parent id, command)
        self.breaker_writes: dict[str, tuple[Txn, BreakerState]] = {}  # last update of each
        self.dropped: list[Item] = []  # decided to nothing, or failed: settle at once

    def apply(self, txn: Txn, item: Item) -> None:
        """Decide ``item`` on ``txn``'s state and fold the commands into it."""
        event = item.event
        if isinstance(event, TimerFired):
            txn.timers_del.add(event.key)  # the row goes with the transition that handled it
            txn.timers_set.pop(event.key, None)
        if isinstance(event, Start) and txn.expected == 0:
            txn.idempotency_key = item.idempotency_key
        decision = self.decide(txn.state, event, txn.plan, self.now, self.breakers)
        txn.state = decision.state
        txn.items.append(item)
        for command in decision.commands:
            _FOLD[type(command)](self, txn, command)

    def transitions(self) -> list[Transition]:
        now = self.now
        record_events = self.record_events
        breakers = self.breaker_writes
        out: list[Transition] = []
        for txn in self.txns.values():
            state = txn.state
            if state is None or not txn.items:
                continue
            timers_set = txn.timers_set
            txn.transition = transition = Transition(
                txn.execution_id,
                txn.expected,
                _encode(state),
                state.workflow,
                state.version,
                state.status,
                state.parent_id,
                state.created_at or now,
                now,
                list(timers_set.items()) if timers_set else (),
                list(txn.timers_del) if txn.timers_del else (),
                txn.outbox,
                self._breakers_of(txn) if breakers else (),
                txn.idempotency_key,
                _encode(txn.emits) if txn.emits and record_events else None,
            )
            if txn.emits and self.deliveries_of is not None:
                transition.deliveries = self.deliveries_of(transition, txn.emits)
            out.append(transition)
        return out

    def _breakers_of(self, txn: Txn) -> list[tuple[str, bytes]]:
        """Breakers are shared: each is written by the transition that updated it last."""
        return [(f, _encode(b)) for f, (t, b) in self.breaker_writes.items() if t is txn]


# ------------------------------------------------------------------ folding commands


def _dispatch(batch: Batch, txn: Txn, command: DispatchTask) -> None:
    task = command.task
    if batch.reply_to is not None:
        task = msgspec.structs.replace(task, reply_to=batch.reply_to(task.execution_id))
    txn.outbox.append((task.queue, _encode(task)))


def _cancel_task(batch: Batch, txn: Txn, command: CancelTask) -> None:
    txn.cancel_tasks.append(command)


def _start_timer(batch: Batch, txn: Txn, command: StartTimer) -> None:
    txn.timers_set[command.key] = command.due
    txn.timers_del.discard(command.key)


def _cancel_timer(batch: Batch, txn: Txn, command: CancelTimer) -> None:
    txn.timers_set.pop(command.key, None)
    txn.timers_del.add(command.key)


def _start_child(batch: Batch, txn: Txn, command: StartChild) -> None:
    batch.child_starts.append((txn.execution_id, command))


def _cancel_child(batch: Batch, txn: Txn, command: CancelChild) -> None:
    batch.follow_ups.append(Item(command.child_id, CancelRequested("parent cancelled")))


def _notify_parent(batch: Batch, txn: Txn, command: NotifyParent) -> None:
    batch.follow_ups.append(Item(command.parent_id, command.event))


def _update_breaker(batch: Batch, txn: Txn, command: UpdateBreaker) -> None:
    batch.breakers[command.function] = command.state
    batch.breaker_writes[command.function] = (txn, command.state)


def _emit(batch: Batch, txn: Txn, command: Emit) -> None:
    txn.emits.append(command)


_FOLD: dict[type[Command], Callable[[Batch, Txn, Any], None]] = {
    DispatchTask: _dispatch,
    CancelTask: _cancel_task,
    StartTimer: _start_timer,
    CancelTimer: _cancel_timer,
    StartChild: _start_child,
    CancelChild: _cancel_child,
    NotifyParent: _notify_parent,
    UpdateBreaker: _update_breaker,
    Emit: _emit,
}

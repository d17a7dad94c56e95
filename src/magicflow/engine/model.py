"""The engine's vocabulary: execution state, the events that move it, the commands it emits.

``decide(state, event, plan, now, breakers) -> Decision`` (in ``engine.machine``) is pure: it
reads only its arguments, and what it wants done in the world comes out as commands, which the
driver commits in the same store transaction as the new state. ``decide`` may update the state
object it is given in place and returns it (the driver owns it; on a failed commit it reloads).

Timer keys are opaque strings made by the engine (``engine.machine`` documents their form); a
store keeps ``(execution_id, key, due)`` and the driver feeds ``TimerFired(key)`` back when due.
A task is identified by ``TaskMessage.id``; the state remembers the id it waits for on each step
(or item), which is how a duplicate or late result is recognised and dropped.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

from magicflow.messages import ErrorInfo, ResultMessage, TaskMessage


class ExecutionStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_EXECUTION


_TERMINAL_EXECUTION = frozenset(
    {
        ExecutionStatus.COMPLETED,
        ExecutionStatus.FAILED,
        ExecutionStatus.CANCELLED,
        ExecutionStatus.TIMED_OUT,
    }
)


class StepStatus(StrEnum):
    PENDING = "pending"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    COMPENSATED = "compensated"


# ---------------------------------------------------------------- state


class ItemState(msgspec.Struct, omit_defaults=True):
    """One item of a ``for_each`` step."""

    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    task_id: str | None = None
    output: Any = None
    error: ErrorInfo | None = None
    input: Any = None  # the rendered input of this item, kept for retries
    timer: str | None = None  # key of the item's running timer (attempt timeout or retry backoff)


class StepState(msgspec.Struct, omit_defaults=True):
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0  # calls of the step's own function (SPEC §1)
    task_id: str | None = None  # the task (or timer/child) whose outcome the step waits for
    input: Any = None  # the rendered input, kept for retries, fallback and compensation
    output: Any = None
    error: ErrorInfo | None = None
    fallback_used: bool = False
    fallback_index: int = 0  # next option of the fallback chain to try
    started_at: float | None = None
    completed_at: float | None = None
    items: list[ItemState] | None = None  # for_each
    child_id: str | None = None  # workflow steps: the child execution
    timer: str | None = None  # key of the step's running timer (timeout, backoff, sleep)
    compensation_attempts: int = 0  # calls of the compensation function
    next_item: int = 0  # for_each: index of the next item never dispatched
    active_items: int = 0  # for_each: items holding a max_parallel slot (running or retrying)
    done_items: int = 0  # for_each: items completed
    held_fallback: bool = False  # a fallback call waits for the execution to be resumed


class ExecutionState(msgspec.Struct, omit_defaults=True):
    id: str
    workflow: str
    version: str
    status: ExecutionStatus = ExecutionStatus.PENDING
    input: Any = None
    output: Any = None
    error: ErrorInfo | None = None
    steps: dict[str, StepState] = {}
    created_at: float = 0.0
    started_at: float | None = None
    completed_at: float | None = None
    deadline: float | None = None  # absolute, epoch seconds
    parent_id: str | None = None
    parent_step_id: str | None = None
    completion_order: list[str] = []  # step ids in the order they completed (for compensation)
    compensating: list[str] = []  # steps still to compensate, next first
    seq: int = 0  # counter that makes task ids and timer keys unique within the execution
    deadline_timer: str | None = None  # key of the running deadline timer
    tasks: dict[str, TaskMessage] = {}  # tasks dispatched whose result is awaited, by id
    signals: dict[str, list[Any]] = {}  # signals received before a step waited for them
    ending: ExecutionStatus | None = None  # the final status, while in-flight work winds down
    unfinished: int = 0  # steps not yet in a final status


# ---------------------------------------------------------------- events


class Start(msgspec.Struct, tag=True, frozen=True):
    """Create the execution and schedule its first steps."""

    input: Any = None
    deadline: float | None = None  # inherited from a parent; the plan's timeout may shorten it
    parent_id: str | None = None
    parent_step_id: str | None = None
    execution_id: str = ""  # the id of the execution to create (the driver makes it, e.g. a ULID)


class TaskResult(msgspec.Struct, tag=True, frozen=True):
    result: ResultMessage


class TimerFired(msgspec.Struct, tag=True, frozen=True):
    key: str


class SignalReceived(msgspec.Struct, tag=True, frozen=True):
    name: str
    payload: Any = None


class CancelRequested(msgspec.Struct, tag=True, frozen=True):
    reason: str = "cancelled by request"


class PauseRequested(msgspec.Struct, tag=True, frozen=True):
    pass


class ResumeRequested(msgspec.Struct, tag=True, frozen=True):
    pass


class RetryRequested(msgspec.Struct, tag=True, frozen=True):
    """Run a finished, unsuccessful execution again from its failed steps."""


class Recover(msgspec.Struct, tag=True, frozen=True):
    """After a restart with a broker that does not keep messages (``memory://``): dispatch again,
    with the same task ids, every task the execution is still waiting for."""


class ChildFinished(msgspec.Struct, tag=True, frozen=True):
    child_id: str
    parent_step_id: str
    status: ExecutionStatus
    output: Any = None
    error: ErrorInfo | None = None


Event = (
    Start
    | TaskResult
    | TimerFired
    | SignalReceived
    | CancelRequested
    | PauseRequested
    | ResumeRequested
    | RetryRequested
    | Recover
    | ChildFinished
)


# ---------------------------------------------------------------- commands


class BreakerState(msgspec.Struct, frozen=True, omit_defaults=True):
    """A circuit breaker's state, shared by every execution that calls ``function``."""

    state: str = "closed"  # closed | open | half_open
    failures: int = 0  # consecutive failures while closed
    opened_at: float = 0.0
    half_open_calls: int = 0  # calls let through since it went half-open


class DispatchTask(msgspec.Struct, tag=True, frozen=True):
    """Publish a task to ``task.queue`` (through the outbox)."""

    task: TaskMessage


class CancelTask(msgspec.Struct, tag=True, frozen=True):
    """Best effort: tell a running executor to stop working on a task whose result is moot."""

    task_id: str
    queue: str = "default"


class StartTimer(msgspec.Struct, tag=True, frozen=True):
    key: str
    due: float


class CancelTimer(msgspec.Struct, tag=True, frozen=True):
    key: str


class StartChild(msgspec.Struct, tag=True, frozen=True):
    """Start a child execution for a ``workflow`` step; its end comes back as ChildFinished."""

    child_id: str
    workflow: str
    version: str | None  # None: the latest registered version
    input: Any
    parent_step_id: str
    deadline: float | None


class CancelChild(msgspec.Struct, tag=True, frozen=True):
    child_id: str


class NotifyParent(msgspec.Struct, tag=True, frozen=True):
    parent_id: str
    event: ChildFinished


class UpdateBreaker(msgspec.Struct, tag=True, frozen=True):
    function: str
    state: BreakerState


class Emit(msgspec.Struct, tag=True, frozen=True):
    """A lifecycle event for watchers (SSE, webhooks, logs): ``execution.completed``,
    ``step.started``, ``step.retrying`` ..."""

    kind: str
    step_id: str | None = None
    data: dict[str, Any] = {}


Command = (
    DispatchTask
    | CancelTask
    | StartTimer
    | CancelTimer
    | StartChild
    | CancelChild
    | NotifyParent
    | UpdateBreaker
    | Emit
)


class Decision(msgspec.Struct, frozen=True):
    state: ExecutionState
    commands: list[Command]

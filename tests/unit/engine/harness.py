"""A tiny world around ``decide`` for tests: it applies commands by hand and keeps a fake clock.

``Run`` plays driver, broker, timer store and executor: dispatched tasks wait in ``tasks``
until the test answers them (``ok`` / ``fail``) or ``drive`` answers them with a handler;
timers wait in ``timers`` and fire in due order as the clock is moved forward.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from magicflow.dsl.compile import compile_workflow
from magicflow.dsl.plan import WorkflowPlan
from magicflow.engine.machine import decide
from magicflow.engine.model import (
    BreakerState,
    CancelChild,
    CancelTask,
    CancelTimer,
    ChildFinished,
    Command,
    DispatchTask,
    Emit,
    Event,
    ExecutionState,
    ExecutionStatus,
    NotifyParent,
    SignalReceived,
    Start,
    StartChild,
    StartTimer,
    StepStatus,
    TaskResult,
    TimerFired,
    UpdateBreaker,
)
from magicflow.messages import ErrorInfo, ResultMessage, TaskMessage

Outcome = tuple[str, Any] | None  # ("ok", output) | ("fail", ErrorInfo) | None (no answer)
Handler = Callable[[TaskMessage], Outcome]


def plan_of(text: str) -> WorkflowPlan:
    return compile_workflow(textwrap.dedent(text))


def encoded(state: ExecutionState | None) -> bytes:
    return msgspec.json.encode(state)


def error(type_: str = "Boom", message: str = "boom", *, non_retryable: bool = False) -> ErrorInfo:
    return ErrorInfo(type=type_, message=message, non_retryable=non_retryable)


@dataclass
class Run:
    plan: WorkflowPlan
    now: float = 1000.0
    execution_id: str = "ex1"
    state: ExecutionState | None = None
    tasks: dict[str, TaskMessage] = field(default_factory=dict)  # dispatched, unanswered
    dispatched: list[TaskMessage] = field(default_factory=list)
    cancelled_tasks: list[str] = field(default_factory=list)
    timers: dict[str, float] = field(default_factory=dict)
    children: dict[str, StartChild] = field(default_factory=dict)
    cancelled_children: list[str] = field(default_factory=list)
    notified: list[NotifyParent] = field(default_factory=list)
    breakers: dict[str, BreakerState] = field(default_factory=dict)
    events: list[Emit] = field(default_factory=list)
    last: list[Command] = field(default_factory=list)

    @classmethod
    def of(cls, text: str, **kwargs: Any) -> Run:
        return cls(plan_of(text), **kwargs)

    # ---------------------------------------------------------------- sending events

    def send(self, event: Event) -> list[Command]:
        decision = decide(self.state, event, self.plan, self.now, self.breakers)
        self.state = decision.state
        self.last = decision.commands
        for command in decision.commands:
            self._apply(command)
        return decision.commands

    def _apply(self, command: Command) -> None:
        if isinstance(command, DispatchTask):
            self.tasks[command.task.id] = command.task
            self.dispatched.append(command.task)
        elif isinstance(command, CancelTask):
            self.tasks.pop(command.task_id, None)
            self.cancelled_tasks.append(command.task_id)
        elif isinstance(command, StartTimer):
            self.timers[command.key] = command.due
        elif isinstance(command, CancelTimer):
            self.timers.pop(command.key, None)
        elif isinstance(command, StartChild):
            self.children[command.child_id] = command
        elif isinstance(command, CancelChild):
            self.cancelled_children.append(command.child_id)
        elif isinstance(command, NotifyParent):
            self.notified.append(command)
        elif isinstance(command, UpdateBreaker):
            self.breakers[command.function] = command.state
        elif isinstance(command, Emit):
            self.events.append(command)

    def start(self, input: Any = None, **kwargs: Any) -> list[Command]:
        return self.send(Start(input=input, execution_id=self.execution_id, **kwargs))

    # ---------------------------------------------------------------- answering tasks

    def task(self, step_id: str, index: int | None = None) -> TaskMessage:
        """The one unanswered task of a step (or item)."""
        found = [t for t in self.tasks.values() if t.step_id == step_id and t.item_index == index]
        assert len(found) == 1, f"expected one task for {step_id}[{index}], got {found}"
        return found[0]

    def result(self, task: TaskMessage, outcome: tuple[str, Any]) -> list[Command]:
        status, value = outcome
        message = ResultMessage(
            task_id=task.id,
            execution_id=task.execution_id,
            step_id=task.step_id,
            status="completed" if status == "ok" else "failed",
            output=value if status == "ok" else None,
            error=value if status != "ok" else None,
            attempt=task.attempt,
            item_index=task.item_index,
        )
        self.tasks.pop(task.id, None)
        return self.send(TaskResult(result=message))

    def ok(self, step_id: str, output: Any = None, index: int | None = None) -> list[Command]:
        return self.result(self.task(step_id, index), ("ok", output))

    def fail(
        self, step_id: str, err: ErrorInfo | None = None, index: int | None = None
    ) -> list[Command]:
        return self.result(self.task(step_id, index), ("fail", err or error()))

    def signal(self, name: str, payload: Any = None) -> list[Command]:
        return self.send(SignalReceived(name=name, payload=payload))

    def child_done(
        self,
        child_id: str,
        status: ExecutionStatus = ExecutionStatus.COMPLETED,
        output: Any = None,
        err: ErrorInfo | None = None,
    ) -> list[Command]:
        start = self.children[child_id]
        event = ChildFinished(
            child_id=child_id,
            parent_step_id=start.parent_step_id,
            status=status,
            output=output,
            error=err,
        )
        return self.send(event)

    # ---------------------------------------------------------------- time

    def next_timer(self) -> tuple[str, float] | None:
        if not self.timers:
            return None
        key = min(self.timers, key=lambda k: (self.timers[k], k))
        return key, self.timers[key]

    def fire(self, prefix: str = "") -> list[Command]:
        """Fire the earliest timer (whose key starts with ``prefix``), moving the clock."""
        keys = [k for k in self.timers if k.startswith(prefix)]
        assert keys, f"no timer {prefix!r} in {self.timers}"
        key = min(keys, key=lambda k: (self.timers[k], k))
        self.now = max(self.now, self.timers.pop(key))
        return self.send(TimerFired(key=key))

    def drive(self, handler: Handler, max_events: int = 10_000) -> ExecutionState:
        """Answer tasks with ``handler`` and fire timers until nothing is left to do."""
        for _ in range(max_events):
            state = self.state
            assert state is not None
            if state.status.is_terminal:
                return state
            pending = [t for t in self.tasks.values() if t.id in state.tasks]
            answered = False
            for task in pending:
                outcome = handler(task)
                if outcome is not None:
                    self.result(task, outcome)
                    answered = True
                    break
            if not answered:
                if not self.timers:
                    return state
                self.fire()
        raise AssertionError("the execution did not settle")

    # ---------------------------------------------------------------- reading

    @property
    def st(self) -> ExecutionState:
        assert self.state is not None
        return self.state

    def outcome(self) -> ExecutionStatus:
        """The execution's status (a call, so type checkers do not narrow it between events)."""
        return self.st.status

    def status(self, step_id: str) -> StepStatus:
        return self.st.steps[step_id].status

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def succeed(output: Any = None) -> Handler:
    return lambda task: ("ok", output if output is not None else {"by": task.function})

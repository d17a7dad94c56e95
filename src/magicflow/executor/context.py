"""What a business function receives: ``StepContext``."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from magicflow.errors import StepCancelled
from magicflow.messages import StepType, TaskMessage

_step_logger = logging.getLogger("magicflow.step")


class CancelFlag:
    """Set (from the event loop) when a step's result stops mattering; read from any thread.

    A plain flag, not a ``threading.Event``: it is made for every task and only ever polled.
    """

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


@dataclass(frozen=True, slots=True)
class StepContext:
    """The call of one business function: its input and where it stands in its workflow.

    ``input`` is plain decoded JSON (dict, list or scalar). ``attempt`` is 1-based.
    ``deadline`` (an aware UTC datetime, or None) is when the result stops mattering: the
    earlier of this attempt's timeout and the execution's deadline. ``step_type`` says whether
    this is the step's own function, a fallback or a compensation. ``headers`` is the task's
    context (workflow name and version, trace headers).
    """

    input: Any
    execution_id: str
    workflow_name: str
    workflow_version: str
    step_id: str
    attempt: int
    deadline: datetime | None
    task_id: str
    function: str
    step_type: StepType = "function"
    item_index: int | None = None
    headers: Mapping[str, Any] = field(default_factory=dict, repr=False)
    _cancelled: CancelFlag = field(default_factory=CancelFlag, repr=False, compare=False)

    @classmethod
    def from_task(
        cls,
        task: TaskMessage,
        *,
        deadline: float | None = None,
        cancelled: CancelFlag | None = None,
    ) -> StepContext:
        """The context of ``task``; ``deadline`` in epoch seconds."""
        name, _, version = task.workflow_id.partition("@")
        return cls(
            input=task.input,
            execution_id=task.execution_id,
            workflow_name=name,
            workflow_version=version,
            step_id=task.step_id,
            attempt=task.attempt,
            deadline=None if deadline is None else datetime.fromtimestamp(deadline, UTC),
            task_id=task.id,
            function=task.function,
            step_type=task.step_type,
            item_index=task.item_index,
            headers=task.context,
            _cancelled=CancelFlag() if cancelled is None else cancelled,
        )

    @property
    def log_extra(self) -> dict[str, Any]:
        """The ids that identify this call, as ``extra`` for log records."""
        return {
            "execution_id": self.execution_id,
            "workflow_name": self.workflow_name,
            "workflow_version": self.workflow_version,
            "step_id": self.step_id,
            "task_id": self.task_id,
            "attempt": self.attempt,
            "item_index": self.item_index,
            "step_type": self.step_type,
        }

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """The ``magicflow.step`` logger, with this call's ids in each record's ``extra``."""
        return logging.LoggerAdapter(_step_logger, self.log_extra)

    def time_remaining(self) -> float | None:
        """Seconds until ``deadline`` (never negative), or None without a deadline."""
        if self.deadline is None:
            return None
        return max(self.deadline.timestamp() - time.time(), 0.0)

    @property
    def cancelled(self) -> bool:
        """True once the result stops mattering (timed out, or cancelled by the service).

        Async functions are cancelled for real; a sync function can't be interrupted, so a
        long one may check this (or call ``raise_if_cancelled``) and stop early.
        """
        return self._cancelled.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise ``StepCancelled`` when the result stops mattering (see ``cancelled``)."""
        if self._cancelled.is_set():
            raise StepCancelled(f"step {self.step_id!r} was cancelled")

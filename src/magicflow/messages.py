"""Messages between the workflow service and executors (SPEC §7), and their encoding.

A task travels service → broker → executor; a result travels back. Both are msgspec
structs encoded as JSON: fast, and readable on any broker's management UI. Times are
seconds since the epoch (floats); durations are seconds.

Delivery is at least once. The service applies a result only when ``task_id`` is the task it
is waiting for on that step, so a duplicate or late result changes nothing.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

StepType = Literal["function", "fallback", "compensation"]
ResultStatus = Literal["completed", "failed"]


class ErrorInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """What went wrong in an attempt. ``type`` is the exception's class name."""

    type: str
    message: str
    non_retryable: bool = False
    step_id: str | None = None
    traceback: str | None = None


class TaskMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    """One call of a business function. ``id`` is unique per dispatch of a step (or item)."""

    id: str
    workflow_id: str  # "name@version"
    execution_id: str
    step_id: str
    function: str
    input: Any
    attempt: int  # 1-based: which call of the step's own function this is
    created_at: float
    step_type: StepType = "function"
    queue: str = "default"
    timeout: float | None = None  # seconds this attempt may run
    deadline: float | None = None  # epoch seconds after which the result no longer matters
    item_index: int | None = None  # for_each: which item
    retry_policy: dict[str, Any] | None = None
    context: dict[str, Any] = {}  # workflow name/version and trace headers
    reply_to: str | None = None  # the queue for the result (None: ``magicflow.results``)


class ResultMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    task_id: str
    execution_id: str
    step_id: str
    status: ResultStatus
    output: Any = None
    error: ErrorInfo | None = None
    duration: float = 0.0
    completed_at: float = 0.0
    attempt: int = 0
    item_index: int | None = None
    executor_id: str | None = None


_task_encoder = msgspec.json.Encoder()
_task_decoder = msgspec.json.Decoder(TaskMessage)
_result_decoder = msgspec.json.Decoder(ResultMessage)


def encode(message: TaskMessage | ResultMessage) -> bytes:
    return _task_encoder.encode(message)


def decode_task(data: bytes) -> TaskMessage:
    return _task_decoder.decode(data)


def decode_result(data: bytes) -> ResultMessage:
    return _result_decoder.decode(data)

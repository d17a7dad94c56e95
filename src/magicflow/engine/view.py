"""The execution result document of SPEC §3, as the CLI, the HTTP API and the client return it.

Every step of the definition is listed: a step that never started is ``pending``, or
``cancelled`` once the execution has ended. Timestamps are RFC 3339 in UTC with milliseconds
(``2026-11-25T20:00:00.000Z``). An error is ``{"type", "message", "step_id"}`` or null.
"""

from __future__ import annotations

import time
from typing import Any

from magicflow.dsl.plan import WorkflowPlan
from magicflow.engine.model import ExecutionState, StepState, StepStatus
from magicflow.messages import ErrorInfo

_PENDING = StepState()


def timestamp(epoch: float | None) -> str | None:
    """Seconds since the epoch as RFC 3339 UTC with milliseconds and ``Z``; None stays None."""
    if epoch is None:
        return None
    millis = round(epoch * 1000)
    seconds, ms = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


def error_document(error: ErrorInfo | None, step_id: str | None = None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"type": error.type, "message": error.message, "step_id": error.step_id or step_id}


def step_document(ss: StepState, step_id: str, ended: bool) -> dict[str, Any]:
    status = ss.status
    if ended and status is StepStatus.PENDING:
        status = StepStatus.CANCELLED
    return {
        "status": str(status),
        "attempts": ss.attempts,
        "output": ss.output,
        "error": error_document(ss.error, step_id),
        "fallback_used": ss.fallback_used,
        "started_at": timestamp(ss.started_at),
        "completed_at": timestamp(ss.completed_at),
    }


def execution_document(state: ExecutionState, plan: WorkflowPlan) -> dict[str, Any]:
    """The result JSON of an execution (plain data, ready for ``json.dumps``)."""
    ended = state.status.is_terminal
    steps = {
        sp.id: step_document(state.steps.get(sp.id, _PENDING), sp.id, ended) for sp in plan.steps
    }
    return {
        "execution_id": state.id,
        "workflow": {"name": state.workflow, "version": state.version},
        "status": str(state.status),
        "input": state.input,
        "output": state.output,
        "error": error_document(state.error),
        "steps": steps,
        "started_at": timestamp(state.started_at),
        "completed_at": timestamp(state.completed_at),
    }

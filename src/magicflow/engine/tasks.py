"""The task messages and child execution ids the engine makes (see ``engine.context`` for the
id formats)."""

from __future__ import annotations

from typing import Any

from magicflow.dsl.plan import StepPlan
from magicflow.engine.context import Ctx, retry_policy_dict
from magicflow.engine.model import DispatchTask
from magicflow.messages import StepType, TaskMessage
from magicflow.tracecontext import TRACEPARENT, traceparent


def send_task(
    ctx: Ctx,
    sp: StepPlan,
    function: str,
    payload: Any,
    attempt: int,
    step_type: StepType,
    index: int | None = None,
) -> str:
    """Dispatch one call of ``function`` for step ``sp``; remember it as awaited; its id.

    Compensation calls carry no deadline: they run after the execution's work has ended.
    """
    st = ctx.state
    task_id = f"{st.id}:{sp.id}:{ctx.next_seq()}"
    message = TaskMessage(
        id=task_id,
        workflow_id=f"{st.workflow}@{st.version}",
        execution_id=st.id,
        step_id=sp.id,
        function=function,
        input=payload,
        attempt=attempt,
        created_at=ctx.now,
        step_type=step_type,
        queue=sp.queue,
        timeout=sp.timeout,
        deadline=None if step_type == "compensation" else st.deadline,
        item_index=index,
        retry_policy=retry_policy_dict(sp.retry),
        context={
            "workflow_name": st.workflow,
            "workflow_version": st.version,
            TRACEPARENT: traceparent(st.id),
        },
    )
    st.tasks[task_id] = message
    ctx.commands.append(DispatchTask(task=message))
    return task_id


def child_id(execution_id: str, step_id: str, index: int | None, seq: int) -> str:
    if index is None:
        return f"{execution_id}.{step_id}.{seq}"
    return f"{execution_id}.{step_id}.{index}.{seq}"


def child_index(execution_id: str, step_id: str, child: str) -> tuple[bool, int | None]:
    """Which target of the step started ``child``: (known, item index or None)."""
    prefix = f"{execution_id}.{step_id}."
    if not child.startswith(prefix):
        return False, None
    rest = child[len(prefix) :].split(".")
    if len(rest) == 1:
        return True, None
    if len(rest) == 2 and rest[0].isdigit():
        return True, int(rest[0])
    return False, None

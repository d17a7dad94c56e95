"""How an execution ends: cancelling in-flight work, compensation (saga), the final status.

A failure (a step failed without ``continue_on_failure``, the output could not be rendered,
the deadline passed with action ``fail``) sets ``state.ending`` and ``state.error``, cancels
every running step, then compensates: the completed steps that declare a ``compensation`` (and
were completed by their own function, not by a fallback), in reverse completion order, one at
a time. Each compensation call is retried per its step's retry policy; one that still fails is
recorded on the step (``error``, status stays ``completed``) and the next one runs. Then the
execution takes its ending status. A user cancel, or the deadline with action ``cancel``, ends
the execution at once without compensation (and stops a compensation under way).
"""

from __future__ import annotations

from typing import Any

from magicflow.dsl.plan import StepKind, StepPlan
from magicflow.engine.context import Ctx, render, with_step
from magicflow.engine.model import (
    CancelChild,
    CancelTask,
    CancelTimer,
    ChildFinished,
    ExecutionStatus,
    ItemState,
    NotifyParent,
    StepState,
    StepStatus,
)
from magicflow.engine.policies import retry_delay, should_retry
from magicflow.engine.tasks import send_task
from magicflow.messages import ErrorInfo

FINAL_STEP = frozenset(
    {
        StepStatus.COMPLETED,
        StepStatus.FAILED,
        StepStatus.SKIPPED,
        StepStatus.TIMED_OUT,
        StepStatus.CANCELLED,
        StepStatus.COMPENSATED,
    }
)
ACTIVE_STEP = frozenset({StepStatus.RUNNING, StepStatus.WAITING, StepStatus.SCHEDULED})
ACTIVE_ITEM = frozenset({StepStatus.RUNNING, StepStatus.SCHEDULED})


def settle(ctx: Ctx, ss: StepState, status: StepStatus) -> None:
    """Put a step in a final status (counting it once)."""
    if ss.status not in FINAL_STEP:
        ctx.state.unfinished -= 1
    ss.status = status
    ss.completed_at = ctx.now
    ss.held_fallback = False


def cancel_task(ctx: Ctx, task_id: str | None) -> None:
    if task_id is None:
        return
    message = ctx.state.tasks.pop(task_id, None)
    if message is not None:
        ctx.commands.append(CancelTask(task_id=task_id, queue=message.queue))


def cancel_call(ctx: Ctx, sp: StepPlan, target: StepState | ItemState) -> None:
    """Cancel the target's running call (task or child execution), if any."""
    task_id = target.task_id
    if task_id is None:
        return
    target.task_id = None
    if task_id in ctx.state.tasks:
        cancel_task(ctx, task_id)
    elif sp.kind is StepKind.WORKFLOW:
        ctx.commands.append(CancelChild(child_id=task_id))


def cancel_step_work(ctx: Ctx, sp: StepPlan, ss: StepState) -> None:
    """Stop whatever the step is doing: its call or child, its timers, its running items."""
    ctx.cancel_timer(ss)
    cancel_call(ctx, sp, ss)
    if ss.items is not None:
        ss.next_item = len(ss.items)  # the fan-out is over: no item goes out any more
    if ss.items is not None and ss.active_items:
        for item in ss.items:
            if item.status in ACTIVE_ITEM:
                ctx.cancel_timer(item)
                cancel_call(ctx, sp, item)
                item.status = StepStatus.CANCELLED
        ss.active_items = 0


def cancel_running(ctx: Ctx) -> None:
    """Cancel every step still at work, and any compensation under way."""
    st = ctx.state
    for sp in ctx.plan.steps:
        ss = st.steps.get(sp.id)
        if ss is None:
            continue
        if ss.status in ACTIVE_STEP:
            cancel_step_work(ctx, sp, ss)
            settle(ctx, ss, StepStatus.CANCELLED)
            ctx.emit("step.cancelled", sp.id)
        elif ss.timer is not None or ss.task_id is not None:  # a compensation under way
            ctx.cancel_timer(ss)
            cancel_task(ctx, ss.task_id)
            ss.task_id = None
    for task_id in list(st.tasks):
        cancel_task(ctx, task_id)


def fail_execution(ctx: Ctx, error: ErrorInfo, ending: ExecutionStatus) -> None:
    """Stop scheduling, cancel running steps, compensate, then end with ``ending``."""
    st = ctx.state
    if st.ending is not None or st.status.is_terminal:
        return
    st.ending = ending
    st.error = error
    cancel_running(ctx)
    plan = ctx.plan
    st.compensating = [
        sid
        for sid in reversed(st.completion_order)
        if plan.step(sid).compensation is not None
        and st.steps[sid].status is StepStatus.COMPLETED
        and not st.steps[sid].fallback_used
    ]
    next_compensation(ctx)


def next_compensation(ctx: Ctx) -> None:
    """Dispatch the next compensation; once there is none left, end the execution."""
    st = ctx.state
    while st.compensating:
        sid = st.compensating[0]
        if dispatch_compensation(ctx, ctx.plan.step(sid), st.steps[sid]):
            return
        st.compensating.pop(0)
    finish(ctx, st.ending or ExecutionStatus.FAILED)


def dispatch_compensation(ctx: Ctx, sp: StepPlan, ss: StepState) -> bool:
    """Dispatch the step's compensation call; False when its input could not be rendered."""
    comp = sp.compensation
    if comp is None:
        return False
    payload: Any = ss.input if ss.items is None else [item.input for item in ss.items]
    if comp.input is not None:
        payload, error = render(comp.input, ctx.scope(), "the compensation input", sp.id)
        if error is not None:
            record_compensation_failure(ctx, sp, ss, error)
            return False
    ss.compensation_attempts += 1
    attempt = ss.compensation_attempts
    ss.task_id = send_task(ctx, sp, comp.function, payload, attempt, "compensation")
    if sp.timeout is not None:
        ss.timer = ctx.step_timer("timeout", sp.id, None, ctx.now + sp.timeout)
    if ss.compensation_attempts == 1:
        ctx.emit("step.compensating", sp.id)
    return True


def compensation_outcome(ctx: Ctx, sp: StepPlan, ss: StepState, error: ErrorInfo | None) -> None:
    """The running compensation call of ``sp`` ended (``error`` None: it succeeded)."""
    ctx.cancel_timer(ss)
    ss.task_id = None
    if error is None:
        ss.status = StepStatus.COMPENSATED
        ctx.emit("step.compensated", sp.id)
    elif should_retry(sp.retry, ss.compensation_attempts, error):
        attempt = ss.compensation_attempts
        delay = retry_delay(sp.retry, attempt, ctx.state.id, sp.id + "#compensation", None)
        ss.timer = ctx.step_timer("compensate", sp.id, None, ctx.now + delay)
        ctx.emit("step.compensation_retrying", sp.id, attempt=attempt, delay=delay)
        return
    else:
        record_compensation_failure(ctx, sp, ss, error)
    if ctx.state.compensating and ctx.state.compensating[0] == sp.id:
        ctx.state.compensating.pop(0)
    next_compensation(ctx)


def retry_compensation(ctx: Ctx, sp: StepPlan, ss: StepState) -> None:
    if dispatch_compensation(ctx, sp, ss):
        return
    if ctx.state.compensating and ctx.state.compensating[0] == sp.id:
        ctx.state.compensating.pop(0)
    next_compensation(ctx)


def record_compensation_failure(ctx: Ctx, sp: StepPlan, ss: StepState, error: ErrorInfo) -> None:
    ss.error = with_step(
        ErrorInfo(type=error.type, message=f"compensation failed: {error.message}"), sp.id
    )
    ctx.emit("step.compensation_failed", sp.id, error=error.type, message=error.message)


def complete_execution(ctx: Ctx) -> None:
    """Every step is final and none failed the execution: render the output and end."""
    plan, st = ctx.plan, ctx.state
    if plan.output is None:
        output: Any = {leaf: st.steps[leaf].output for leaf in plan.leaves}
    else:
        output, error = render(plan.output, ctx.scope(), "the output", None)
        if error is not None:
            fail_execution(ctx, error, ExecutionStatus.FAILED)
            return
    st.output = output
    finish(ctx, ExecutionStatus.COMPLETED)


def finish(ctx: Ctx, status: ExecutionStatus) -> None:
    """The execution takes its final status; tell watchers and the parent."""
    st = ctx.state
    st.status = status
    st.ending = None
    st.compensating = []
    st.completed_at = ctx.now
    if st.deadline_timer is not None:
        ctx.commands.append(CancelTimer(key=st.deadline_timer))
        st.deadline_timer = None
    data: dict[str, Any] = {}
    if st.error is not None:
        data["error"] = {"type": st.error.type, "message": st.error.message}
    ctx.emit(f"execution.{status}", None, **data)
    if st.parent_id is not None:
        ctx.commands.append(
            NotifyParent(
                parent_id=st.parent_id,
                event=ChildFinished(
                    child_id=st.id,
                    parent_step_id=st.parent_step_id or "",
                    status=status,
                    output=st.output,
                    error=st.error,
                ),
            )
        )

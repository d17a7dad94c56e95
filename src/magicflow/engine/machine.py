"""``decide``: the engine's pure, total transition function.

``decide(state, event, plan, now, breakers) -> Decision`` reads only its arguments: no I/O, no
clock, no randomness (retry jitter is derived from the attempt's identity, see
``policies.jitter``). It updates ``state`` in place and returns it with the commands to
commit in the same transaction. It never raises: an event that makes no sense in the current
state (a result for a task nobody waits for, a stale timer, a duplicate) changes nothing and
yields no commands. Identifiers and timer keys are documented in ``engine.context``.

Behaviour where SPEC is silent (the rest is in the docstrings of ``steps``, ``foreach``,
``lifecycle`` and ``policies``):

- Signals: a signal completes every step waiting for it now. If none is waiting but a step
  that waits for that name has yet to (pending, or between attempts), the signal is buffered
  in ``state.signals`` (in arrival order) and the next such step to start waiting takes the
  oldest one at once. A signal nobody will ever wait for is dropped.
- Pause: results, signals and timers are still applied, but nothing new is dispatched: no step
  starts, no further ``for_each`` item goes out, and an attempt whose backoff ends, or a
  fallback call, is held as ``scheduled``. ``ResumeRequested`` dispatches all of that. The
  deadline still applies while paused, and compensation (the way out of a failure) is not
  held, so a failing execution always ends.
- Deadline: action ``fail`` cancels running steps, compensates, and ends ``timed_out``; action
  ``cancel`` cancels and ends ``cancelled`` without compensation. Any event that arrives once
  ``now`` has reached the deadline is judged after it: the deadline is applied first, even if
  its timer has not fired yet (so a step that an executor failed for lack of time does not
  turn a ``timed_out`` execution into a ``failed`` one). A deadline that passes while
  the execution is already compensating changes nothing (compensation is not bounded by it).
- Cancel: running steps are cancelled (their tasks and children too); no compensation.
- Retry (of a ``failed``, ``timed_out`` or ``cancelled`` execution): every step that is not
  ``completed`` or ``skipped`` runs again from scratch (a ``compensated`` step too: its effect
  was undone); the deadline starts over from now when the plan has a timeout (an inherited
  deadline is not restored).
- A non-``Start`` event without a state (the driver should never send one) returns a blank
  ``pending`` state and no commands, so the driver can recognise and drop it.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from magicflow.dsl.plan import DeadlineAction, StepKind, WorkflowPlan
from magicflow.engine.context import Ctx
from magicflow.engine.foreach import item_succeeded
from magicflow.engine.lifecycle import (
    cancel_running,
    compensation_outcome,
    fail_execution,
    finish,
    retry_compensation,
)
from magicflow.engine.model import (
    BreakerState,
    CancelRequested,
    CancelTimer,
    ChildFinished,
    Decision,
    DispatchTask,
    Event,
    ExecutionState,
    ExecutionStatus,
    PauseRequested,
    Recover,
    ResumeRequested,
    RetryRequested,
    SignalReceived,
    Start,
    StartTimer,
    StepState,
    StepStatus,
    TaskResult,
    TimerFired,
)
from magicflow.engine.scheduling import drain, rerun, resume
from magicflow.engine.steps import (
    WAIT_TOKEN,
    attempt_failed,
    call_succeeded,
    complete_step,
    dispatch_call,
    fallback_outcome,
    record_breaker,
    target_of,
    timed_out,
)
from magicflow.engine.tasks import child_index
from magicflow.messages import ErrorInfo

DEADLINE_ERROR = "DeadlineExceeded"
CANCELLED_ERROR = "CancelledError"
CHILD_ERROR = "ChildWorkflowError"


def decide(
    state: ExecutionState | None,
    event: Event,
    plan: WorkflowPlan,
    now: float,
    breakers: Mapping[str, BreakerState],
) -> Decision:
    """Apply ``event`` to ``state`` (``None`` before ``Start``): the new state and commands."""
    if state is None:
        if isinstance(event, Start):
            state = _create(event, plan, now)
            ctx = Ctx(state, plan, now, breakers)
            _start(ctx, event)
        else:
            return Decision(state=_blank(event, plan), commands=[])
    elif state.status.is_terminal:
        if not isinstance(event, RetryRequested):
            return Decision(state=state, commands=[])
        ctx = Ctx(state, plan, now, breakers)
        _on_retry(ctx)
    else:
        ctx = Ctx(state, plan, now, breakers)
        deadline = state.deadline
        if state.deadline_timer is not None and deadline is not None and now >= deadline:
            key = state.deadline_timer  # passed already: it comes first
            ctx.commands.append(CancelTimer(key=key))
            _on_timer(ctx, key)
        if not state.status.is_terminal:
            _apply(ctx, event)
    drain(ctx)
    ctx.flush_breakers()
    return Decision(state=ctx.state, commands=ctx.commands)


def _apply(ctx: Ctx, event: Event) -> None:
    if isinstance(event, TaskResult):
        _on_result(ctx, event)
    elif isinstance(event, TimerFired):
        _on_timer(ctx, event.key)
    elif isinstance(event, SignalReceived):
        _on_signal(ctx, event)
    elif isinstance(event, ChildFinished):
        _on_child(ctx, event)
    elif isinstance(event, CancelRequested):
        _on_cancel(ctx, event.reason)
    elif isinstance(event, PauseRequested):
        if ctx.state.status is ExecutionStatus.RUNNING:
            ctx.state.status = ExecutionStatus.PAUSED
            ctx.emit("execution.paused")
    elif isinstance(event, ResumeRequested):
        if ctx.state.status is ExecutionStatus.PAUSED:
            ctx.state.status = ExecutionStatus.RUNNING
            ctx.emit("execution.resumed")
            if ctx.state.ending is None:
                resume(ctx)
    elif isinstance(event, Recover):
        ctx.commands.extend(DispatchTask(task=task) for task in ctx.state.tasks.values())
    # Start on an existing execution is a duplicate, and RetryRequested applies only to an
    # execution that has ended: nothing to do


# ---------------------------------------------------------------- start


def _create(event: Start, plan: WorkflowPlan, now: float) -> ExecutionState:
    deadline = event.deadline
    if plan.timeout is not None:
        own = now + plan.timeout
        deadline = own if deadline is None else min(deadline, own)
    return ExecutionState(
        id=event.execution_id,
        workflow=plan.name,
        version=plan.version,
        status=ExecutionStatus.RUNNING,
        input={} if event.input is None else event.input,
        steps={sp.id: StepState() for sp in plan.steps},
        created_at=now,
        started_at=now,
        deadline=deadline,
        parent_id=event.parent_id,
        parent_step_id=event.parent_step_id,
        unfinished=len(plan.steps),
    )


def _start(ctx: Ctx, event: Start) -> None:
    st = ctx.state
    ctx.emit("execution.started", None, workflow=st.workflow, version=st.version)
    _arm_deadline(ctx)
    ctx.ready.extend(ctx.plan.roots)


def _arm_deadline(ctx: Ctx) -> None:
    st = ctx.state
    if st.deadline is not None:
        st.deadline_timer = f"deadline:{ctx.next_seq()}"
        ctx.commands.append(StartTimer(key=st.deadline_timer, due=st.deadline))


def _blank(event: Event, plan: WorkflowPlan) -> ExecutionState:
    execution_id = event.result.execution_id if isinstance(event, TaskResult) else ""
    return ExecutionState(id=execution_id, workflow=plan.name, version=plan.version)


# ---------------------------------------------------------------- results


def _on_result(ctx: Ctx, event: TaskResult) -> None:
    result = event.result
    st = ctx.state
    task = st.tasks.get(result.task_id)
    if task is None:
        return  # duplicate, late, or not ours: applied once, dropped after
    sp = ctx.plan.step_index.get(task.step_id)
    ss = st.steps.get(task.step_id)
    target = None if ss is None else target_of(ss, task.item_index)
    if sp is None or ss is None or target is None or target.task_id != task.id:
        return
    del st.tasks[task.id]
    error = None
    if result.status != "completed":
        error = result.error or ErrorInfo(type="StepError", message="the call failed")
    if task.step_type == "compensation":
        compensation_outcome(ctx, sp, ss, error)
    elif task.step_type == "fallback":
        fallback_outcome(ctx, sp, ss, result.output, error)
    else:
        record_breaker(ctx, sp, success=error is None)
        if error is not None:
            attempt_failed(ctx, sp, ss, task.item_index, error)
        elif task.item_index is not None:
            item_succeeded(ctx, sp, ss, task.item_index, result.output)
        else:
            call_succeeded(ctx, sp, ss, result.output)


def _on_child(ctx: Ctx, event: ChildFinished) -> None:
    sp = ctx.plan.step_index.get(event.parent_step_id)
    ss = ctx.state.steps.get(event.parent_step_id)
    if sp is None or ss is None or sp.kind is not StepKind.WORKFLOW:
        return
    known, index = child_index(ctx.state.id, sp.id, event.child_id)
    target = target_of(ss, index) if known else None
    if target is None or target.task_id != event.child_id:
        return  # a child this step no longer waits for
    if event.status is ExecutionStatus.COMPLETED:
        if index is None:
            call_succeeded(ctx, sp, ss, event.output)
        else:
            item_succeeded(ctx, sp, ss, index, event.output)
        return
    # SPEC §1: a failed child fails the step and the step's retry policy applies, whatever
    # made the child fail (a non-retryable error inside the child ended the *child's* step).
    error = (
        msgspec.structs.replace(event.error, non_retryable=False)
        if event.error is not None
        else ErrorInfo(
            type=CHILD_ERROR, message=f"child execution {event.child_id} ended {event.status}"
        )
    )
    attempt_failed(ctx, sp, ss, index, error)


def _on_signal(ctx: Ctx, event: SignalReceived) -> None:
    st = ctx.state
    if st.ending is not None:
        return
    delivered = wanted = False
    for sp in ctx.plan.steps:
        if sp.kind is not StepKind.WAIT or sp.signal != event.name:
            continue
        ss = st.steps.get(sp.id)
        if ss is None:
            continue
        if ss.status is StepStatus.WAITING and ss.task_id == WAIT_TOKEN:
            call_succeeded(ctx, sp, ss, event.payload)
            delivered = True
        elif ss.status in (StepStatus.PENDING, StepStatus.SCHEDULED, StepStatus.RUNNING):
            wanted = True
    if wanted and not delivered:
        st.signals.setdefault(event.name, []).append(event.payload)


# ---------------------------------------------------------------- timers


def _on_timer(ctx: Ctx, key: str) -> None:
    st = ctx.state
    if key.startswith("deadline:"):
        if key == st.deadline_timer:
            st.deadline_timer = None
            _on_deadline(ctx)
        return
    parts = key.split(":")
    if len(parts) != 4:
        return
    kind, step_id, where, _ = parts
    sp, ss = ctx.plan.step_index.get(step_id), st.steps.get(step_id)
    index = None if where == "-" else _int(where)
    if sp is None or ss is None or (where != "-" and index is None):
        return
    target = target_of(ss, index)
    if target is None or target.timer != key:
        return  # stale: cancelled, or superseded
    target.timer = None
    if kind == "timeout":
        timed_out(ctx, sp, ss, index)
    elif kind == "retry":
        dispatch_call(ctx, sp, ss, index)
    elif kind == "compensate":
        retry_compensation(ctx, sp, ss)
    elif kind == "sleep":
        complete_step(ctx, sp, ss, None)


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _on_deadline(ctx: Ctx) -> None:
    st, plan = ctx.state, ctx.plan
    if st.ending is not None:
        return  # already winding down (compensating): let it finish
    error = ErrorInfo(type=DEADLINE_ERROR, message=f"workflow '{plan.name}' passed its deadline")
    if plan.timeout_action is DeadlineAction.CANCEL:
        cancel_running(ctx)
        st.error = error
        finish(ctx, ExecutionStatus.CANCELLED)
    else:
        fail_execution(ctx, error, ExecutionStatus.TIMED_OUT)


# ---------------------------------------------------------------- lifecycle


def _on_cancel(ctx: Ctx, reason: str) -> None:
    st = ctx.state
    cancel_running(ctx)
    if st.error is None:
        st.error = ErrorInfo(type=CANCELLED_ERROR, message=reason)
    finish(ctx, ExecutionStatus.CANCELLED)


def _on_retry(ctx: Ctx) -> None:
    st = ctx.state
    if st.status not in (
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMED_OUT,
        ExecutionStatus.CANCELLED,
    ):
        return
    rerun(ctx)
    st.deadline = None if ctx.plan.timeout is None else ctx.now + ctx.plan.timeout
    _arm_deadline(ctx)
    ctx.emit("execution.retried")

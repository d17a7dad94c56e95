"""One step's life: its calls (function, child, wait, sleep), retries, fallback and end.

A *target* is what makes attempts: the step itself, or one item of a ``for_each`` step (items
retry independently; an item that exhausts its attempts fails the step, which then cancels its
other items and goes to its fallback chain or fails).

Decisions made here where SPEC is silent:

- A refused call (circuit breaker open) does not count as an attempt and is not retried: the
  step goes to its fallback at once, or fails with ``CircuitOpenError``.
- An evaluation error (condition, input, ``for_each``) fails the step at once: no retry, no
  fallback (it is a data or definition error); ``continue_on_failure`` still applies.
- ``timeout_action: fail`` with ``continue_on_failure``: the step ends ``timed_out`` and counts
  as satisfied, as a failed step would.
- A fallback chain that runs out leaves the step ``failed`` with the step's own last error.
- A fallback or compensation call is bounded by the step's ``timeout`` too; a timed-out
  fallback call moves to the next option, a timed-out compensation counts as a failed one.
- ``attempts`` of a wait step counts its waits; of a workflow step, the children it started.
"""

from __future__ import annotations

from typing import Any

from magicflow.dsl.plan import FallbackOption, StepKind, StepPlan, TimeoutAction
from magicflow.engine.context import Ctx, Target, render, with_step
from magicflow.engine.lifecycle import (
    cancel_call,
    cancel_step_work,
    compensation_outcome,
    fail_execution,
    settle,
)
from magicflow.engine.model import (
    ExecutionStatus,
    ItemState,
    StartChild,
    StepState,
    StepStatus,
)
from magicflow.engine.policies import breaker_admit, breaker_record, retry_delay, should_retry
from magicflow.engine.tasks import child_id, send_task
from magicflow.messages import ErrorInfo

CIRCUIT_OPEN = "CircuitOpenError"
TIMEOUT_ERROR = "TimeoutError"
WAIT_TOKEN = "signal"  # task_id of a step that is waiting for its signal


def target_of(ss: StepState, index: int | None) -> Target | None:
    if index is None:
        return ss
    if ss.items is None or not 0 <= index < len(ss.items):
        return None
    return ss.items[index]


def own_input(ss: StepState) -> Any:
    """The step's input: as rendered for its own call (for_each: the list of item inputs)."""
    return ss.input if ss.items is None else [item.input for item in ss.items]


# ---------------------------------------------------------------- calls


def dispatch_call(ctx: Ctx, sp: StepPlan, ss: StepState, index: int | None) -> None:
    """Make the target's next attempt (held as ``scheduled`` while the execution is paused)."""
    target = target_of(ss, index)
    if target is None:
        return
    if ctx.state.status is ExecutionStatus.PAUSED:
        target.status = StepStatus.SCHEDULED
        return
    kind = sp.kind
    if kind is StepKind.FUNCTION:
        call_function(ctx, sp, ss, target, index)
    elif kind is StepKind.WORKFLOW:
        start_child(ctx, sp, ss, target, index)
    elif kind is StepKind.WAIT:
        start_wait(ctx, sp, ss)
    else:
        ss.attempts += 1
        ss.status = StepStatus.WAITING
        ss.timer = ctx.step_timer("sleep", sp.id, None, ctx.now + (sp.sleep or 0.0))


def call_function(ctx: Ctx, sp: StepPlan, ss: StepState, target: Target, index: int | None) -> None:
    function = sp.function or ""
    if sp.breaker is not None:
        admitted, breaker = breaker_admit(ctx.breaker(function), sp.breaker, ctx.now)
        ctx.set_breaker(function, breaker)
        if not admitted:
            error = ErrorInfo(
                type=CIRCUIT_OPEN,
                message=f"circuit breaker of function '{function}' is open",
                step_id=sp.id,
            )
            ctx.emit("step.refused", sp.id, function=function)
            if isinstance(target, ItemState):
                close_item(ss, target, StepStatus.FAILED, error)
            step_exhausted(ctx, sp, ss, error)
            return
    target.attempts += 1
    if target.attempts > ss.attempts:
        ss.attempts = target.attempts
    payload = target.input if isinstance(target, ItemState) else ss.input
    target.task_id = send_task(ctx, sp, function, payload, target.attempts, "function", index)
    target.status = StepStatus.RUNNING
    if sp.timeout is not None:
        target.timer = ctx.step_timer("timeout", sp.id, index, ctx.now + sp.timeout)


def start_child(ctx: Ctx, sp: StepPlan, ss: StepState, target: Target, index: int | None) -> None:
    st = ctx.state
    ref = sp.workflow
    target.attempts += 1
    if target.attempts > ss.attempts:
        ss.attempts = target.attempts
    child = child_id(st.id, sp.id, index, ctx.next_seq())
    target.task_id = child
    target.status = StepStatus.RUNNING
    if index is None:
        ss.child_id = child
    payload = target.input if isinstance(target, ItemState) else ss.input
    ctx.commands.append(
        StartChild(
            child_id=child,
            workflow=ref.name if ref is not None else "",
            version=ref.version if ref is not None else None,
            input=payload,
            parent_step_id=sp.id,
            deadline=st.deadline,
        )
    )
    if sp.timeout is not None:
        target.timer = ctx.step_timer("timeout", sp.id, index, ctx.now + sp.timeout)


def start_wait(ctx: Ctx, sp: StepPlan, ss: StepState) -> None:
    """Wait for the step's signal; one that arrived early (buffered) completes it at once."""
    ss.attempts += 1
    ss.status = StepStatus.WAITING
    buffered = ctx.state.signals.get(sp.signal or "")
    if buffered:
        payload = buffered.pop(0)
        if not buffered:
            del ctx.state.signals[sp.signal or ""]
        complete_step(ctx, sp, ss, payload)
        return
    ss.task_id = WAIT_TOKEN
    if sp.timeout is not None:
        ss.timer = ctx.step_timer("timeout", sp.id, None, ctx.now + sp.timeout)


def close_item(ss: StepState, item: ItemState, status: StepStatus, error: ErrorInfo) -> None:
    item.status = status
    item.error = error
    item.task_id = None
    ss.active_items -= 1


# ---------------------------------------------------------------- outcomes


def call_succeeded(ctx: Ctx, sp: StepPlan, ss: StepState, output: Any) -> None:
    """The step's own call (function, child, signal) succeeded."""
    ctx.cancel_timer(ss)
    ss.task_id = None
    complete_step(ctx, sp, ss, output)


def record_breaker(ctx: Ctx, sp: StepPlan, *, success: bool) -> None:
    if sp.breaker is not None and sp.function is not None:
        breaker = breaker_record(ctx.breaker(sp.function), sp.breaker, ctx.now, success=success)
        ctx.set_breaker(sp.function, breaker)


def attempt_failed(
    ctx: Ctx, sp: StepPlan, ss: StepState, index: int | None, error: ErrorInfo
) -> None:
    """A call of the target failed: back off and try again, or the step has exhausted them."""
    target = target_of(ss, index)
    if target is None:
        return
    ctx.cancel_timer(target)
    target.task_id = None
    error = with_step(error, sp.id)
    target.error = error
    if should_retry(sp.retry, target.attempts, error):
        delay = retry_delay(sp.retry, target.attempts, ctx.state.id, sp.id, index)
        target.timer = ctx.step_timer("retry", sp.id, index, ctx.now + delay)
        _emit(
            ctx,
            "step.retrying",
            sp.id,
            index,
            attempt=target.attempts,
            delay=delay,
            error=error.type,
        )
        return
    if isinstance(target, ItemState):
        close_item(ss, target, StepStatus.FAILED, error)
    step_exhausted(ctx, sp, ss, error)


def step_exhausted(ctx: Ctx, sp: StepPlan, ss: StepState, error: ErrorInfo) -> None:
    """The step's own calls are over without success: fallback chain, else failure."""
    ss.error = with_step(error, sp.id)
    cancel_step_work(ctx, sp, ss)
    if ss.fallback_index < len(sp.fallback):
        next_fallback(ctx, sp, ss)
    else:
        fail_step(ctx, sp, ss, ss.error, StepStatus.FAILED)


def next_fallback(ctx: Ctx, sp: StepPlan, ss: StepState) -> None:
    """Try the fallback options in order, from ``fallback_index``.

    While the execution is paused a fallback *call* is held (status ``scheduled``,
    ``held_fallback``) and made on resume; a fallback ``output`` needs no dispatch and applies.
    """
    while ss.fallback_index < len(sp.fallback):
        option = sp.fallback[ss.fallback_index]
        if option.kind != "output" and ctx.state.status is ExecutionStatus.PAUSED:
            ss.status = StepStatus.SCHEDULED
            ss.held_fallback = True
            return
        ss.fallback_index += 1
        if option.kind == "output":
            output: Any = None
            if option.output is not None:
                output, error = render(option.output, ctx.scope(), "the fallback output", sp.id)
                if error is not None:
                    ctx.emit("step.fallback_failed", sp.id, error=error.type)
                    continue
            complete_step(ctx, sp, ss, output, fallback_used=True)
            return
        if option.function is not None and _call_fallback(ctx, sp, ss, option):
            return
    fail_step(ctx, sp, ss, ss.error or _error(sp, "StepError", "failed"), StepStatus.FAILED)


def _call_fallback(ctx: Ctx, sp: StepPlan, ss: StepState, option: FallbackOption) -> bool:
    """Dispatch a fallback function; False when its input could not be rendered."""
    function = option.function or ""
    payload = own_input(ss)
    if option.input is not None:
        payload, error = render(option.input, ctx.scope(), "the fallback input", sp.id)
        if error is not None:
            ctx.emit("step.fallback_failed", sp.id, error=error.type)
            return False
    ss.task_id = send_task(ctx, sp, function, payload, 1, "fallback")
    ss.status = StepStatus.RUNNING
    if sp.timeout is not None:
        ss.timer = ctx.step_timer("timeout", sp.id, None, ctx.now + sp.timeout)
    ctx.emit("step.fallback", sp.id, function=function)
    return True


def fallback_outcome(
    ctx: Ctx, sp: StepPlan, ss: StepState, output: Any, error: ErrorInfo | None
) -> None:
    ctx.cancel_timer(ss)
    ss.task_id = None
    if error is None:
        complete_step(ctx, sp, ss, output, fallback_used=True)
        return
    ctx.emit("step.fallback_failed", sp.id, error=error.type)
    next_fallback(ctx, sp, ss)


def timed_out(ctx: Ctx, sp: StepPlan, ss: StepState, index: int | None) -> None:
    """The timeout of the target's running call (or wait) fired; its ``timer`` is cleared."""
    target = target_of(ss, index)
    if target is None:
        return
    error = _error(sp, TIMEOUT_ERROR, f"timed out after {sp.timeout}s")
    task = ctx.state.tasks.get(target.task_id or "")
    cancel_call(ctx, sp, target)  # a late result of this call will be dropped
    if task is not None and task.step_type == "compensation":
        compensation_outcome(ctx, sp, ss, error)
        return
    if task is not None and task.step_type == "fallback":
        ctx.emit("step.fallback_failed", sp.id, error=TIMEOUT_ERROR)
        next_fallback(ctx, sp, ss)
        return
    if sp.kind is StepKind.FUNCTION:
        record_breaker(ctx, sp, success=False)
    action = sp.timeout_action
    if action is not TimeoutAction.FAIL:  # with ``fail``, fail_step tells the end
        _emit(ctx, "step.timed_out", sp.id, index, action=str(action))
    if action is TimeoutAction.RETRY:
        attempt_failed(ctx, sp, ss, index, error)
        return
    if isinstance(target, ItemState):
        close_item(ss, target, StepStatus.TIMED_OUT, error)
    cancel_step_work(ctx, sp, ss)
    if action is TimeoutAction.SKIP:
        skip_step(ctx, sp, ss)
    elif action is TimeoutAction.FALLBACK and ss.fallback_index < len(sp.fallback):
        ss.error = error
        next_fallback(ctx, sp, ss)
    else:
        fail_step(ctx, sp, ss, error, StepStatus.TIMED_OUT)


def _emit(ctx: Ctx, kind: str, step_id: str, index: int | None, **data: Any) -> None:
    if index is not None:
        data["item"] = index
    ctx.emit(kind, step_id, **data)


def _error(sp: StepPlan, type_: str, what: str) -> ErrorInfo:
    return ErrorInfo(type=type_, message=f"step '{sp.id}' {what}", step_id=sp.id)


# ---------------------------------------------------------------- ends


def complete_step(
    ctx: Ctx, sp: StepPlan, ss: StepState, output: Any, *, fallback_used: bool = False
) -> None:
    ctx.cancel_timer(ss)
    ss.task_id = None
    ss.output = output
    ss.fallback_used = fallback_used
    if not fallback_used:
        ss.error = None
    settle(ctx, ss, StepStatus.COMPLETED)
    ctx.state.completion_order.append(sp.id)
    if fallback_used:
        ctx.emit("step.completed", sp.id, fallback_used=True)
    else:
        ctx.emit("step.completed", sp.id)
    ctx.ready.extend(sp.dependents)


def skip_step(ctx: Ctx, sp: StepPlan, ss: StepState) -> None:
    ss.output = None
    settle(ctx, ss, StepStatus.SKIPPED)
    ctx.emit("step.skipped", sp.id)
    ctx.ready.extend(sp.dependents)


def fail_step(ctx: Ctx, sp: StepPlan, ss: StepState, error: ErrorInfo, status: StepStatus) -> None:
    """The step ends ``failed`` / ``timed_out``: satisfied if it may, else the execution fails."""
    cancel_step_work(ctx, sp, ss)
    error = with_step(error, sp.id)
    ss.error = error
    ss.output = None
    settle(ctx, ss, status)
    ctx.emit(
        "step.failed" if status is StepStatus.FAILED else "step.timed_out",
        sp.id,
        error=error.type,
        message=error.message,
    )
    if sp.continue_on_failure:
        ctx.ready.extend(sp.dependents)
    else:
        fail_execution(ctx, error, ExecutionStatus.FAILED)

"""DAG readiness: which steps start, and when the execution has nothing left to do.

When a step ends satisfied (completed, skipped, or failed with ``continue_on_failure``), its
dependents are queued in ``ctx.ready``; ``drain`` starts each one whose dependencies are all
satisfied, through a queue rather than recursion, so a long chain of steps that end at once
(skipped, empty fan-outs) cannot overflow the stack. Per event the work is proportional to the
dependents touched, not to the size of the DAG.
"""

from __future__ import annotations

from magicflow.dsl.plan import StepKind, StepPlan
from magicflow.engine.context import Ctx, evaluate, step_input
from magicflow.engine.foreach import resume_items, start_for_each
from magicflow.engine.lifecycle import complete_execution
from magicflow.engine.model import ExecutionState, ExecutionStatus, StepState, StepStatus
from magicflow.engine.steps import dispatch_call, fail_step, next_fallback, skip_step
from magicflow.messages import ErrorInfo

_FAILED = frozenset({StepStatus.FAILED, StepStatus.TIMED_OUT})
_SATISFIED = frozenset({StepStatus.COMPLETED, StepStatus.SKIPPED})


def satisfied(ss: StepState, sp: StepPlan) -> bool:
    return ss.status in _SATISFIED or (sp.continue_on_failure and ss.status in _FAILED)


def ready(state: ExecutionState, ctx: Ctx, sp: StepPlan) -> bool:
    steps, index = state.steps, ctx.plan.step_index
    for dep in sp.depends_on:
        dep_state, dep_plan = steps.get(dep), index.get(dep)
        if dep_state is None or dep_plan is None or not satisfied(dep_state, dep_plan):
            return False
    return True


def drain(ctx: Ctx) -> None:
    """Start the queued steps that are ready; end the execution when every step is final."""
    st, index = ctx.state, ctx.plan.step_index
    queue = ctx.ready
    while queue:
        if st.status is not ExecutionStatus.RUNNING or st.ending is not None:
            queue.clear()
            break
        sid = queue.popleft()
        ss, sp = st.steps.get(sid), index.get(sid)
        if ss is None or sp is None or ss.status is not StepStatus.PENDING:
            continue
        if ready(st, ctx, sp):
            start_step(ctx, sp, ss)
    active = st.status is ExecutionStatus.RUNNING or st.status is ExecutionStatus.PAUSED
    if st.unfinished <= 0 and st.ending is None and active:
        complete_execution(ctx)


def start_step(ctx: Ctx, sp: StepPlan, ss: StepState) -> None:
    if sp.condition is not None:
        value, error = evaluate(sp.condition, ctx.scope(), "the condition", sp.id)
        if error is not None:
            fail_step(ctx, sp, ss, error, StepStatus.FAILED)
            return
        if not value:
            skip_step(ctx, sp, ss)
            return
    ss.started_at = ctx.now
    ss.status = StepStatus.RUNNING
    ctx.emit("step.started", sp.id)
    if sp.for_each is not None:
        if sp.kind is not StepKind.FUNCTION and sp.kind is not StepKind.WORKFLOW:
            message = f"for_each of step '{sp.id}' needs a function or workflow step"
            fail_step(ctx, sp, ss, ErrorInfo(type="PlanError", message=message), StepStatus.FAILED)
            return
        start_for_each(ctx, sp, ss)
        return
    payload, error = step_input(ctx, sp)
    if error is not None:
        fail_step(ctx, sp, ss, error, StepStatus.FAILED)
        return
    ss.input = payload
    dispatch_call(ctx, sp, ss, None)


def resume(ctx: Ctx) -> None:
    """After a pause: start what became ready, dispatch what was held."""
    st = ctx.state
    for sp in ctx.plan.steps:
        if st.ending is not None:
            return
        ss = st.steps.get(sp.id)
        if ss is None:
            continue
        if ss.status is StepStatus.PENDING:
            ctx.ready.append(sp.id)
        elif ss.status is StepStatus.SCHEDULED and ss.held_fallback:
            ss.held_fallback = False
            next_fallback(ctx, sp, ss)
        elif ss.status is StepStatus.SCHEDULED:
            dispatch_call(ctx, sp, ss, None)
        elif ss.items is not None and ss.status is StepStatus.RUNNING:
            resume_items(ctx, sp, ss)


_RERUN = frozenset(
    {
        StepStatus.PENDING,
        StepStatus.SCHEDULED,
        StepStatus.RUNNING,
        StepStatus.WAITING,
        StepStatus.FAILED,
        StepStatus.TIMED_OUT,
        StepStatus.CANCELLED,
        StepStatus.COMPENSATED,
    }
)


def rerun(ctx: Ctx) -> None:
    """RetryRequested: every step that did not complete (or was compensated) runs again."""
    st = ctx.state
    unfinished = 0
    for sp in ctx.plan.steps:
        ss = st.steps.get(sp.id)
        if ss is None or ss.status in _RERUN:
            st.steps[sp.id] = StepState()
            unfinished += 1
            ctx.ready.append(sp.id)
    st.unfinished = unfinished
    st.completion_order = [
        sid for sid in st.completion_order if st.steps[sid].status is StepStatus.COMPLETED
    ]
    st.tasks = {}
    st.status = ExecutionStatus.RUNNING
    st.error = None
    st.output = None
    st.completed_at = None
    st.ending = None
    st.compensating = []

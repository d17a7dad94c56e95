"""Fan-out: a ``for_each`` step runs one call per item, at most ``max_parallel`` at a time.

The list is evaluated once, when the step starts, and every item's input is rendered then
(``item`` and ``index`` in scope; without an ``input`` template an item's input is the item
itself). Items hold a slot from their first dispatch until they complete or fail, backoff
included, so ``max_parallel`` bounds the calls in flight. Per-event work is O(1) per item:
``next_item``, ``active_items`` and ``done_items`` are counters, never rescans.
``attempts`` of the step is the highest attempt count of its items.
"""

from __future__ import annotations

from typing import Any

from magicflow.dsl.plan import StepPlan
from magicflow.dsl.text import describe
from magicflow.engine.context import EVALUATION_ERROR, Ctx, evaluate, render
from magicflow.engine.model import ExecutionStatus, ItemState, StepState, StepStatus
from magicflow.engine.steps import complete_step, dispatch_call, fail_step
from magicflow.messages import ErrorInfo


def start_for_each(ctx: Ctx, sp: StepPlan, ss: StepState) -> None:
    expression = sp.for_each
    if expression is None:
        return
    value, error = evaluate(expression, ctx.scope(), "for_each", sp.id)
    if error is None and not isinstance(value, list):
        error = ErrorInfo(
            type=EVALUATION_ERROR,
            message=f"for_each of step '{sp.id}' must evaluate to a list, got {describe(value)}",
            non_retryable=True,
            step_id=sp.id,
        )
    if error is not None:
        fail_step(ctx, sp, ss, error, StepStatus.FAILED)
        return
    items: list[ItemState] = []
    template = sp.input
    for index, item in enumerate(value):
        payload: Any = item
        if template is not None:
            payload, error = render(template, ctx.item_scope(item, index), "the input", sp.id)
            if error is not None:
                fail_step(ctx, sp, ss, error, StepStatus.FAILED)
                return
        items.append(ItemState(input=payload))
    if not items:
        complete_step(ctx, sp, ss, [])
        return
    ss.items = items
    ss.status = StepStatus.RUNNING
    fill(ctx, sp, ss)


def fill(ctx: Ctx, sp: StepPlan, ss: StepState) -> None:
    """Dispatch items while slots are free (not while paused or winding down)."""
    st = ctx.state
    items = ss.items
    if items is None or st.status is not ExecutionStatus.RUNNING or st.ending is not None:
        return
    limit = sp.max_parallel or len(items)
    while ss.active_items < limit and ss.next_item < len(items):
        if ss.status is not StepStatus.RUNNING:
            return
        index = ss.next_item
        ss.next_item += 1
        ss.active_items += 1
        dispatch_call(ctx, sp, ss, index)


def resume_items(ctx: Ctx, sp: StepPlan, ss: StepState) -> None:
    """After a pause: dispatch the items whose retry came due meanwhile, then fill."""
    if ss.items is None:
        return
    for index, item in enumerate(ss.items):
        if ss.status is not StepStatus.RUNNING:
            return
        if item.status is StepStatus.SCHEDULED:
            dispatch_call(ctx, sp, ss, index)
    fill(ctx, sp, ss)


def item_succeeded(ctx: Ctx, sp: StepPlan, ss: StepState, index: int, output: Any) -> None:
    items = ss.items
    if items is None:
        return
    item = items[index]
    ctx.cancel_timer(item)
    item.task_id = None
    item.status = StepStatus.COMPLETED
    item.output = output
    ss.active_items -= 1
    ss.done_items += 1
    if ss.done_items >= len(items):
        complete_step(ctx, sp, ss, [it.output for it in items])
    else:
        fill(ctx, sp, ss)

"""What one call of ``decide`` works with: the state, the plan, the clock, the commands it emits.

Identifiers made here (all deterministic, from the execution id and ``state.seq``):

- task id: ``{execution_id}:{step_id}:{seq}`` (unique per dispatch, also for fallback and
  compensation calls);
- child execution id: ``{execution_id}.{step_id}.{seq}``;
- timer keys: ``deadline:{seq}`` for the workflow deadline, and
  ``{kind}:{step_id}:{target}:{seq}`` for a step, where ``kind`` is ``timeout`` (the running
  call's or wait's timeout), ``retry`` (backoff before the next attempt), ``compensate``
  (backoff before a compensation is tried again) or ``sleep``, and ``target`` is ``-`` for the
  step itself or the item index of a ``for_each`` item. A timer is live only while the step
  (or item) still holds its key in ``timer`` (the deadline: in ``state.deadline_timer``); any
  other firing is stale and ignored.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from magicflow.dsl.plan import RetryPolicy, StepPlan, WorkflowPlan
from magicflow.engine.model import (
    BreakerState,
    CancelTimer,
    Command,
    Emit,
    ExecutionState,
    ItemState,
    StartTimer,
    StepState,
    StepStatus,
    UpdateBreaker,
)
from magicflow.messages import ErrorInfo

if TYPE_CHECKING:
    from magicflow.dsl.expressions import Expression, Template

EVALUATION_ERROR = "EvaluationError"
_NO_BREAKER = BreakerState()

Target = StepState | ItemState


class Ctx:
    """Everything one ``decide`` call reads and writes. Lives for that call only."""

    __slots__ = (
        "_breakers",
        "_scope",
        "breaker_updates",
        "commands",
        "now",
        "plan",
        "ready",
        "state",
    )

    def __init__(
        self,
        state: ExecutionState,
        plan: WorkflowPlan,
        now: float,
        breakers: Mapping[str, BreakerState],
    ) -> None:
        self.state = state
        self.plan = plan
        self.now = now
        self.commands: list[Command] = []
        self._breakers = breakers
        self.breaker_updates: dict[str, BreakerState] = {}
        self.ready: deque[str] = deque()  # steps whose dependencies may just have been satisfied
        self._scope: dict[str, Any] | None = None

    # ------------------------------------------------------------ ids and timers

    def next_seq(self) -> int:
        self.state.seq += 1
        return self.state.seq

    def step_timer(self, kind: str, step_id: str, index: int | None, due: float) -> str:
        key = f"{kind}:{step_id}:{'-' if index is None else index}:{self.next_seq()}"
        self.commands.append(StartTimer(key=key, due=due))
        return key

    def cancel_timer(self, target: Target) -> None:
        if target.timer is not None:
            self.commands.append(CancelTimer(key=target.timer))
            target.timer = None

    def emit(self, kind: str, step_id: str | None = None, **data: Any) -> None:
        self.commands.append(Emit(kind=kind, step_id=step_id, data=data))

    # ------------------------------------------------------------ breakers

    def breaker(self, function: str) -> BreakerState:
        local = self.breaker_updates.get(function)
        if local is not None:
            return local
        return self._breakers.get(function, _NO_BREAKER)

    def set_breaker(self, function: str, breaker: BreakerState) -> None:
        if breaker != self.breaker(function):
            self.breaker_updates[function] = breaker

    def flush_breakers(self) -> None:
        for function, breaker in self.breaker_updates.items():
            self.commands.append(UpdateBreaker(function=function, state=breaker))

    # ------------------------------------------------------------ expressions

    def scope(self) -> dict[str, Any]:
        """The expression scope of SPEC §1, made once per call; ``steps`` reads the live state."""
        if self._scope is None:
            st = self.state
            self._scope = {
                "input": st.input,
                "steps": StepsView(st.steps),
                "execution": {"id": st.id},
                "workflow": {"name": st.workflow, "version": st.version},
            }
        return self._scope

    def item_scope(self, item: Any, index: int) -> dict[str, Any]:
        scope = dict(self.scope())
        scope["item"] = item
        scope["index"] = index
        return scope


class StepsView(Mapping[str, Mapping[str, Any]]):
    """``steps`` in the scope: ``{id: {"output", "status"}}`` for every step that has started.

    A view over the state rather than a copy, so that making the scope costs O(1) whatever the
    size of the DAG and a step that ends later in the same ``decide`` is seen at once. A step
    that has not started is absent (reading it is an evaluation error, as the language says).
    """

    __slots__ = ("_steps",)

    def __init__(self, steps: Mapping[str, StepState]) -> None:
        self._steps = steps

    def __getitem__(self, step_id: str) -> Mapping[str, Any]:
        ss = self._steps[step_id]
        if ss.status is StepStatus.PENDING:
            raise KeyError(step_id)
        return {"output": ss.output, "status": str(ss.status)}

    def __iter__(self) -> Iterator[str]:
        return (sid for sid, ss in self._steps.items() if ss.status is not StepStatus.PENDING)

    def __len__(self) -> int:
        return sum(1 for ss in self._steps.values() if ss.status is not StepStatus.PENDING)


def render(
    template: Template, scope: Mapping[str, Any], what: str, step_id: str | None
) -> tuple[Any, ErrorInfo | None]:
    """Render a template; an evaluation error comes back as an ``ErrorInfo``, never raised."""
    try:
        return template.render(scope), None
    except Exception as exc:  # a user's expression must never crash the engine
        return None, evaluation_error(exc, what, step_id)


def evaluate(
    expression: Expression, scope: Mapping[str, Any], what: str, step_id: str | None
) -> tuple[Any, ErrorInfo | None]:
    try:
        return expression.evaluate(scope), None
    except Exception as exc:  # a user's expression must never crash the engine
        return None, evaluation_error(exc, what, step_id)


def evaluation_error(exc: Exception, what: str, step_id: str | None) -> ErrorInfo:
    where = f"step '{step_id}'" if step_id else "the workflow"
    return ErrorInfo(
        type=EVALUATION_ERROR,
        message=f"{what} of {where} could not be evaluated: {exc}",
        non_retryable=True,
        step_id=step_id,
    )


def step_input(ctx: Ctx, sp: StepPlan) -> tuple[Any, ErrorInfo | None]:
    """The input a step's own call receives: its template rendered, else the execution's."""
    if sp.input is None:
        return ctx.state.input, None
    return render(sp.input, ctx.scope(), "the input", sp.id)


@lru_cache(maxsize=256)
def retry_policy_dict(policy: RetryPolicy) -> dict[str, Any]:
    """The retry policy as the task message carries it (informational for executors)."""
    return {
        "strategy": str(policy.strategy),
        "max_attempts": policy.max_attempts,
        "initial_interval": policy.initial_interval,
        "max_interval": policy.max_interval,
        "multiplier": policy.multiplier,
        "jitter": policy.jitter,
    }


def with_step(error: ErrorInfo, step_id: str) -> ErrorInfo:
    if error.step_id == step_id:
        return error
    return ErrorInfo(
        type=error.type,
        message=error.message,
        non_retryable=error.non_retryable,
        step_id=step_id,
        traceback=error.traceback,
    )

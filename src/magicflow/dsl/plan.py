"""The compiled plan: what the engine executes.

A ``WorkflowPlan`` is immutable and built once per workflow version (``compile_plan`` in
``dsl.compile`` caches it by content digest). Every policy in it is *effective*: server
defaults, then the workflow's ``defaults``, then the step's own fields have already been merged,
and every expression has been compiled and scope-checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from magicflow.dsl.expressions import Expression, Template


class StepKind(StrEnum):
    FUNCTION = "function"
    WORKFLOW = "workflow"
    WAIT = "wait_for"
    SLEEP = "sleep"


class TimeoutAction(StrEnum):
    """What a step does when its own ``timeout`` passes."""

    FAIL = "fail"
    SKIP = "skip"
    RETRY = "retry"
    FALLBACK = "fallback"


class DeadlineAction(StrEnum):
    """What an execution does when the workflow ``timeout`` passes."""

    FAIL = "fail"
    CANCEL = "cancel"


class RetryStrategy(StrEnum):
    FIXED = "fixed"
    LINEAR = "linear"
    EXPONENTIAL = "exponential"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how often a failed attempt is tried again. ``max_attempts`` counts the first."""

    strategy: RetryStrategy = RetryStrategy.EXPONENTIAL
    max_attempts: int = 3
    initial_interval: float = 1.0
    max_interval: float = 60.0
    multiplier: float = 2.0
    jitter: bool = True
    non_retryable_errors: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_interval <= 0 or self.max_interval <= 0:
            raise ValueError("retry intervals must be positive")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")

    def delay(self, failed_attempt: int, rand: float) -> float:
        """Seconds to wait after attempt ``failed_attempt`` (1-based) failed.

        ``rand`` in [0, 1) comes from the caller's seeded source, so this stays pure; with
        ``jitter`` the delay is drawn uniformly from [0, delay] ("full jitter").
        """
        if self.strategy is RetryStrategy.FIXED:
            base = self.initial_interval
        elif self.strategy is RetryStrategy.LINEAR:
            base = self.initial_interval * failed_attempt
        else:
            base = self.initial_interval * self.multiplier ** (failed_attempt - 1)
        base = min(base, self.max_interval)
        return base * rand if self.jitter else base

    def is_retryable(self, error_type: str | None) -> bool:
        return error_type not in self.non_retryable_errors


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """A circuit breaker, keyed by function name and shared by every execution."""

    failure_threshold: int = 5
    timeout: float = 30.0
    half_open_max_calls: int = 1

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.half_open_max_calls < 1:
            raise ValueError("breaker thresholds must be at least 1")
        if self.timeout <= 0:
            raise ValueError("breaker timeout must be positive")


@dataclass(frozen=True, slots=True)
class FallbackOption:
    """One way to fall back: a fixed ``output`` (kind "output") or a ``function`` call."""

    kind: str  # "output" | "function"
    output: Template | None = None
    function: str | None = None
    input: Template | None = None  # the function's input; None means: the step's input


@dataclass(frozen=True, slots=True)
class Compensation:
    function: str
    input: Template | None = None  # None means: the step's input


@dataclass(frozen=True, slots=True)
class WorkflowRef:
    name: str
    version: str | None = None  # None: the latest registered version

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"


@dataclass(frozen=True, slots=True)
class StepPlan:
    id: str
    kind: StepKind
    depends_on: tuple[str, ...] = ()
    dependents: tuple[str, ...] = ()
    function: str | None = None  # kind FUNCTION
    workflow: WorkflowRef | None = None  # kind WORKFLOW
    signal: str | None = None  # kind WAIT: the signal name
    sleep: float | None = None  # kind SLEEP: seconds
    input: Template | None = None  # None means: the execution input
    condition: Expression | None = None
    for_each: Expression | None = None
    max_parallel: int | None = None
    timeout: float | None = None
    timeout_action: TimeoutAction = TimeoutAction.FAIL
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerPolicy | None = None
    fallback: tuple[FallbackOption, ...] = ()
    compensation: Compensation | None = None
    queue: str = "default"
    continue_on_failure: bool = False
    line: int = 0  # where the step starts in its file, for messages


@dataclass(frozen=True, slots=True)
class WorkflowPlan:
    name: str
    version: str
    steps: tuple[StepPlan, ...]  # topological order; ties keep the file's order
    step_index: Mapping[str, StepPlan]
    roots: tuple[str, ...]  # steps without dependencies
    leaves: tuple[str, ...]  # steps nothing depends on (they make the default output)
    digest: str  # sha256 of the canonical document: the identity of this version's content
    document: Mapping[str, Any]  # the definition as plain JSON data, for storage
    description: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    input_schema: Mapping[str, Any] | None = None
    timeout: float | None = None
    timeout_action: DeadlineAction = DeadlineAction.FAIL
    output: Template | None = None  # None: {leaf id: its output}
    workflow_refs: frozenset[WorkflowRef] = frozenset()

    def step(self, step_id: str) -> StepPlan:
        return self.step_index[step_id]

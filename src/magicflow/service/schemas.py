"""The HTTP API's request and response bodies (apart from the workflow language's models)."""

from __future__ import annotations

from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field, model_validator

_encode = msgspec.json.Encoder().encode


class Problem(BaseModel):
    """Every 4xx and 5xx answer: a reason a person can read."""

    detail: str


class RequestErrorOut(BaseModel):
    loc: list[str] = Field(description="Where: body, query, path or header, then the field.")
    msg: str


class RequestProblem(Problem):
    """422: the request does not fit this API (a parameter or the body)."""

    errors: list[RequestErrorOut] = []


class DiagnosticOut(BaseModel):
    file: str
    line: int
    col: int
    severity: str
    message: str
    path: list[str | int] = []


class InvalidProblem(Problem):
    """422: what is wrong, as ``magic-flow validate --format json`` reports it."""

    diagnostics: list[DiagnosticOut] = []


# ------------------------------------------------------------------ definitions


class DefinitionOut(BaseModel):
    name: str
    version: str
    description: str | None = None
    digest: str
    created_at: str
    deleted: bool = False
    document: dict[str, Any] = Field(description="The definition, as registered (canonical).")
    source: str | None = Field(
        default=None, description="The YAML (or JSON) it was registered from."
    )


class VersionOut(BaseModel):
    name: str
    version: str
    description: str | None = None
    digest: str
    created_at: str
    deleted: bool = False


class VersionList(BaseModel):
    items: list[VersionOut]


class WorkflowOut(BaseModel):
    name: str
    latest_version: str
    description: str | None = None
    versions: list[str]


class WorkflowList(BaseModel):
    items: list[WorkflowOut]


class Deleted(BaseModel):
    name: str
    version: str | None = None
    deleted: int = Field(description="How many versions were deleted (soft: still readable).")


# ------------------------------------------------------------------ executions


class _JsonBody(BaseModel):
    """A request body the engine can store: strictly valid Unicode (JSON lets a string hold
    a lone surrogate, ``"\\ud800"``, that no UTF-8 encoder takes)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _encodable(self) -> _JsonBody:
        try:
            _encode(self.model_dump())
        except (UnicodeEncodeError, TypeError, OverflowError, ValueError) as exc:
            raise ValueError(f"the body cannot be stored as JSON: {exc}") from None
        return self


class StartExecution(_JsonBody):
    input: Any = Field(default=None, description="The execution input ({} when absent).")
    version: str | None = Field(
        default=None, min_length=1, max_length=200, description="Default: latest."
    )
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=200, description="Same key, same execution."
    )


class ExecutionCreated(BaseModel):
    execution_id: str


class CancelExecution(_JsonBody):
    reason: str | None = Field(default=None, max_length=1000)


class SendSignal(_JsonBody):
    payload: Any = Field(default=None, description="The waiting step's output.")


class Accepted(BaseModel):
    execution_id: str
    action: str


class WorkflowRefOut(BaseModel):
    name: str
    version: str


class ErrorOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    message: str
    step_id: str | None = None


class StepOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str
    attempts: int
    output: Any = None
    error: ErrorOut | None = None
    fallback_used: bool = False
    started_at: str | None = None
    completed_at: str | None = None


class ExecutionOut(BaseModel):
    """An execution (SPEC §3): the same document as ``magic-flow run --output json``."""

    model_config = ConfigDict(extra="allow")

    execution_id: str
    workflow: WorkflowRefOut
    status: str
    input: Any = None
    output: Any = None
    error: ErrorOut | None = None
    steps: dict[str, StepOut]
    started_at: str | None = None
    completed_at: str | None = None


class ExecutionList(BaseModel):
    items: list[ExecutionOut]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page.")


# ------------------------------------------------------------------ health


class CheckOut(BaseModel):
    status: str = Field(description="healthy | degraded | unhealthy | unknown")
    message: str
    duration_ms: float
    last_checked: str


class HealthOut(BaseModel):
    status: str = Field(description="healthy | degraded | unhealthy | unknown")
    timestamp: str
    version: str
    checks: dict[str, CheckOut]
    metadata: dict[str, Any] = {}

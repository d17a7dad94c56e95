"""Executions: start, read, list, control (cancel, pause, resume, retry), signal, watch (SSE)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from magicflow.errors import WorkflowValidationError
from magicflow.service.auth import CanOperate, CanRead
from magicflow.service.events import stream
from magicflow.service.responses import JSON
from magicflow.service.schemas import (
    Accepted,
    CancelExecution,
    ExecutionCreated,
    ExecutionList,
    ExecutionOut,
    InvalidProblem,
    Problem,
    SendSignal,
    StartExecution,
)
from magicflow.service.state import engine_of, service_of

router = APIRouter(tags=["executions"])

ExecutionId = Annotated[str, Path(max_length=200)]
MAX_VERSION = 2**63 - 1  # versions are 64-bit integers in every store
Status = Literal["pending", "running", "paused", "completed", "failed", "cancelled", "timed_out"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem},
}
_CONTROL_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    409: {"model": Problem, "description": "The execution's status does not allow it."},
}


_POLL_OTHER_INSTANCES = 0.5  # seconds between store reads of an event stream


@router.post(
    "/workflows/{name}/executions",
    status_code=201,
    dependencies=[CanOperate],
    response_model=ExecutionCreated,
    responses={**_ERRORS, 422: {"model": InvalidProblem, "description": "Input is invalid."}},
)
async def start_execution(
    request: Request,
    name: Annotated[str, Path(max_length=200)],
    body: StartExecution | None = None,
) -> Any:
    """Start an execution of the latest (or the given) version. With an ``idempotency_key``
    already used for this workflow, the execution it started."""
    body = body or StartExecution()
    engine = engine_of(request)
    if body.version is not None and await engine.store.get_definition(name, body.version) is None:
        raise HTTPException(404, f"workflow {name}@{body.version} is not registered")
    try:
        execution_id = await engine.start(
            name, body.input, version=body.version, idempotency_key=body.idempotency_key
        )
    except WorkflowValidationError as exc:  # the input fails the workflow's input_schema
        problem = InvalidProblem(
            detail="invalid input: " + "; ".join(d.message for d in exc.diagnostics),
            diagnostics=[d.to_dict() for d in exc.diagnostics],  # type: ignore[misc]
        )
        return JSONResponse(problem.model_dump(), status_code=422)
    return JSON({"execution_id": execution_id}, status_code=201)


@router.get("/executions", dependencies=[CanRead], responses=_ERRORS)
async def list_executions(
    request: Request,
    workflow: Annotated[str | None, Query(max_length=200)] = None,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ExecutionList:
    """Executions, newest first, a page at a time (``next_cursor`` for the next one)."""
    try:
        page = await engine_of(request).list_executions(
            workflow=workflow, status=status, limit=limit, cursor=cursor
        )
    except (ValueError, OverflowError):
        raise HTTPException(422, f"invalid cursor {cursor!r}: pass back a next_cursor") from None
    return ExecutionList.model_validate(page)


@router.get(
    "/executions/{execution_id}",
    dependencies=[CanRead],
    response_model=ExecutionOut,
    responses=_ERRORS,
)
async def get_execution(request: Request, execution_id: ExecutionId) -> Any:
    """The execution as committed now (SPEC §3: the document of ``magic-flow run``)."""
    return JSON(await engine_of(request).get(execution_id))


@router.post(
    "/executions/{execution_id}/cancel",
    status_code=202,
    dependencies=[CanOperate],
    responses=_CONTROL_ERRORS,
)
async def cancel_execution(
    request: Request, execution_id: ExecutionId, body: CancelExecution | None = None
) -> Accepted:
    """Cancel a pending, running or paused execution (no compensation)."""
    reason = body.reason if body is not None and body.reason else "cancelled by request"
    await engine_of(request).cancel(execution_id, reason)
    return Accepted(execution_id=execution_id, action="cancel")


@router.post(
    "/executions/{execution_id}/pause",
    status_code=202,
    dependencies=[CanOperate],
    responses=_CONTROL_ERRORS,
)
async def pause_execution(request: Request, execution_id: ExecutionId) -> Accepted:
    """Pause a pending or running execution: steps running now finish, no new ones start."""
    await engine_of(request).pause(execution_id)
    return Accepted(execution_id=execution_id, action="pause")


@router.post(
    "/executions/{execution_id}/resume",
    status_code=202,
    dependencies=[CanOperate],
    responses=_CONTROL_ERRORS,
)
async def resume_execution(request: Request, execution_id: ExecutionId) -> Accepted:
    """Resume a paused execution."""
    await engine_of(request).resume(execution_id)
    return Accepted(execution_id=execution_id, action="resume")


@router.post(
    "/executions/{execution_id}/retry",
    status_code=202,
    dependencies=[CanOperate],
    responses=_CONTROL_ERRORS,
)
async def retry_execution(request: Request, execution_id: ExecutionId) -> Accepted:
    """Run a failed, cancelled or timed-out execution again from its unfinished steps."""
    await engine_of(request).retry(execution_id)
    return Accepted(execution_id=execution_id, action="retry")


@router.post(
    "/executions/{execution_id}/signals/{signal}",
    status_code=202,
    dependencies=[CanOperate],
    responses=_CONTROL_ERRORS,
)
async def send_signal(
    request: Request,
    execution_id: ExecutionId,
    signal: Annotated[str, Path(max_length=200)],
    body: SendSignal | None = None,
) -> Accepted:
    """Deliver a signal: the step waiting for it (``wait_for``) completes with the payload."""
    payload = body.payload if body is not None else None
    await engine_of(request).signal(execution_id, signal, payload)
    return Accepted(execution_id=execution_id, action=f"signal:{signal}")


@router.get(
    "/executions/{execution_id}/events",
    dependencies=[CanRead],
    response_class=StreamingResponse,
    responses={
        **_ERRORS,
        200: {
            "content": {"text/event-stream": {}},
            "description": "Every state change, in order; the stream ends with the execution.",
        },
    },
)
async def watch_execution(
    request: Request,
    execution_id: ExecutionId,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_VERSION, description="Events after this version.")
    ] = None,
    last_event_id: Annotated[str | None, Header(max_length=40)] = None,
) -> StreamingResponse:
    """Server-sent events: what the execution did so far, then live, until it ends.
    Reconnecting with ``Last-Event-ID`` (or ``?after=``) resumes after that event."""
    service = service_of(request)
    store = service.engine.store
    if await store.load(execution_id) is None:
        raise HTTPException(404, f"no execution {execution_id!r}")
    start = after or 0
    resume_at = (last_event_id or "").strip()
    if resume_at.isascii() and resume_at.isdigit():
        start = max(start, min(int(resume_at), MAX_VERSION))
    several = service.engine.driver.ownership is not None  # other instances may decide it
    frames = stream(
        store,
        service.hub,
        execution_id,
        start,
        service.settings.heartbeat,
        poll=_POLL_OTHER_INSTANCES if several else None,
    )
    return StreamingResponse(
        frames,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )

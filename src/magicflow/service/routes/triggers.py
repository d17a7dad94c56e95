"""Event triggers of a workflow: create, list, get, delete (admins; operators and viewers
read)."""

from __future__ import annotations

import time
from typing import Annotated, Any, cast

from fastapi import APIRouter, HTTPException, Path, Request, Response

from magicflow.service.auth import CanAdminister, CanRead
from magicflow.service.broker_pool import redact
from magicflow.service.hook_schemas import TriggerIn, TriggerList, TriggerOut
from magicflow.service.ids import new_execution_id
from magicflow.service.routes.event_streams import check_target
from magicflow.service.schemas import Problem
from magicflow.service.state import engine_of, timestamp
from magicflow.service.triggers import Triggers
from magicflow.stores.base import TriggerRecord

router = APIRouter(tags=["triggers"])

Name = Annotated[str, Path(max_length=200)]
TriggerId = Annotated[str, Path(max_length=200)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem},
}


def triggers_of(request: Request) -> Triggers:
    return cast(Triggers, request.app.state.triggers)


def _out(record: TriggerRecord, triggers: Triggers) -> TriggerOut:
    return TriggerOut(
        id=record.id,
        workflow=record.workflow,
        queue=record.queue,
        broker=None if record.broker is None else redact(record.broker),
        version=record.version,
        idempotency_key=record.idempotency_key,
        input=record.input,
        created_at=timestamp(record.created_at),
        consuming=record.id in triggers.running,
        last_error=triggers.errors.get(record.id),
    )


@router.post(
    "/workflows/{name}/triggers",
    status_code=201,
    dependencies=[CanAdminister],
    response_model=TriggerOut,
    responses=_ERRORS,
)
async def create_trigger(request: Request, name: Name, body: TriggerIn) -> Any:
    """Start an execution of the workflow for each message on ``queue``: this service's
    instances consume it (competing consumers) from now on."""
    engine = engine_of(request)
    await check_target(engine, body.queue, body.broker)
    if await engine.store.get_definition(name, body.version) is None:
        label = name if body.version is None else f"{name}@{body.version}"
        raise HTTPException(404, f"workflow {label} is not registered")
    triggers = triggers_of(request)
    record = TriggerRecord(
        id="tr_" + new_execution_id(),
        workflow=name,
        queue=body.queue,
        idempotency_key=body.idempotency_key,
        created_at=time.time(),
        input=body.input,
        broker=body.broker,
        version=body.version,
    )
    await engine.store.save_trigger(record)
    await triggers.refresh()
    return _out(record, triggers)


@router.get(
    "/workflows/{name}/triggers",
    dependencies=[CanRead],
    response_model=TriggerList,
    responses=_ERRORS,
)
async def list_workflow_triggers(request: Request, name: Name) -> Any:
    records = await engine_of(request).store.list_triggers(name)
    return TriggerList(items=[_out(r, triggers_of(request)) for r in records])


@router.get("/triggers", dependencies=[CanRead], response_model=TriggerList, responses=_ERRORS)
async def list_triggers(request: Request) -> Any:
    """Every trigger, of every workflow, oldest first."""
    records = await engine_of(request).store.list_triggers()
    return TriggerList(items=[_out(r, triggers_of(request)) for r in records])


async def _find(request: Request, trigger_id: str) -> TriggerRecord:
    for record in await engine_of(request).store.list_triggers():
        if record.id == trigger_id:
            return record
    raise HTTPException(404, f"no trigger {trigger_id!r}")


@router.get(
    "/triggers/{trigger_id}",
    dependencies=[CanRead],
    response_model=TriggerOut,
    responses=_ERRORS,
)
async def get_trigger(request: Request, trigger_id: TriggerId) -> Any:
    return _out(await _find(request, trigger_id), triggers_of(request))


@router.delete(
    "/triggers/{trigger_id}", status_code=204, dependencies=[CanAdminister], responses=_ERRORS
)
async def delete_trigger(request: Request, trigger_id: TriggerId) -> Response:
    """Stop consuming the queue (a batch being started is finished and acknowledged first);
    the messages left on it stay there."""
    if not await engine_of(request).store.delete_trigger(trigger_id):
        raise HTTPException(404, f"no trigger {trigger_id!r}")
    await triggers_of(request).refresh()
    return Response(status_code=204)

"""Cron schedules of a workflow: create, list, delete (operators and admins; viewers read)."""

from __future__ import annotations

from typing import Annotated, Any, cast

import msgspec
from fastapi import APIRouter, HTTPException, Path, Request, Response

from magicflow.service.auth import CanOperate, CanRead
from magicflow.service.hook_schemas import ScheduleIn, ScheduleList, ScheduleOut
from magicflow.service.ids import new_execution_id
from magicflow.service.scheduler import Scheduler, next_tick
from magicflow.service.schemas import Problem
from magicflow.service.state import engine_of, timestamp
from magicflow.stores.base import ScheduleRecord

router = APIRouter(tags=["schedules"])

Name = Annotated[str, Path(max_length=200)]
ScheduleId = Annotated[str, Path(max_length=200)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem},
}
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Any).decode


def scheduler_of(request: Request) -> Scheduler:
    return cast(Scheduler, request.app.state.scheduler)


def _out(record: ScheduleRecord) -> ScheduleOut:
    return ScheduleOut(
        id=record.id,
        workflow=record.workflow,
        cron=record.cron,
        input=_decode(record.input),
        version=record.version,
        missed=record.missed,
        enabled=record.enabled,
        next_run=timestamp(record.next_run),
        created_at=timestamp(record.created_at),
    )


@router.post(
    "/workflows/{name}/schedules",
    status_code=201,
    dependencies=[CanOperate],
    response_model=ScheduleOut,
    responses=_ERRORS,
)
async def create_schedule(request: Request, name: Name, body: ScheduleIn) -> Any:
    """Start an execution of the workflow at each tick of ``cron`` (UTC)."""
    store = engine_of(request).store
    if await store.get_definition(name, body.version) is None:
        label = name if body.version is None else f"{name}@{body.version}"
        raise HTTPException(404, f"workflow {label} is not registered")
    scheduler = scheduler_of(request)
    now = scheduler.clock()
    record = ScheduleRecord(
        id="sch_" + new_execution_id(),
        workflow=name,
        cron=body.cron,
        next_run=next_tick(body.cron, now),
        created_at=now,
        input=_encode({} if body.input is None else body.input),
        version=body.version,
        missed=body.missed,
        enabled=body.enabled,
    )
    await store.save_schedule(record)
    scheduler.wake()
    return _out(record)


@router.get(
    "/workflows/{name}/schedules",
    dependencies=[CanRead],
    response_model=ScheduleList,
    responses=_ERRORS,
)
async def list_schedules(request: Request, name: Name) -> Any:
    records = await engine_of(request).store.list_schedules(name)
    return ScheduleList(items=[_out(r) for r in records])


@router.delete(
    "/workflows/{name}/schedules/{schedule_id}",
    status_code=204,
    dependencies=[CanOperate],
    responses=_ERRORS,
)
async def delete_schedule(request: Request, name: Name, schedule_id: ScheduleId) -> Response:
    store = engine_of(request).store
    mine = {r.id for r in await store.list_schedules(name)}
    if schedule_id not in mine or not await store.delete_schedule(schedule_id):
        raise HTTPException(404, f"workflow {name} has no schedule {schedule_id!r}")
    return Response(status_code=204)

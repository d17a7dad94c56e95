"""Event streams (admin): publish the lifecycle events of executions to a broker queue or
topic; create, list, delete, and read their delivery log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

from magicflow.brokers import broker_from_url
from magicflow.errors import ConfigurationError
from magicflow.service.auth import CanAdminister
from magicflow.service.broker_pool import redact
from magicflow.service.engine import Engine
from magicflow.service.event_streams import new_stream_id
from magicflow.service.hook_schemas import (
    DeliveryList,
    EventStreamIn,
    EventStreamList,
    EventStreamOut,
)
from magicflow.service.routes.webhooks import deliverer_of, delivery_log
from magicflow.service.schemas import Problem
from magicflow.service.state import engine_of, timestamp
from magicflow.stores.base import EventStreamRecord

router = APIRouter(tags=["event streams"], dependencies=[CanAdminister])

StreamId = Annotated[str, Path(max_length=200)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem},
}


async def check_target(engine: Engine, queue: str, url: str | None) -> None:
    """422 unless ``url`` is None or a broker URL this service can use, and ``queue`` is not
    one that the service's own messages use on its broker (a trigger would take the tasks of
    executors, an event stream would feed them events)."""
    if url is None:
        definitions = await engine.store.list_definitions(include_deleted=True)
        taken = {step.queue for d in definitions for step in engine.catalog.plan_of(d).steps}
        if queue == "default" or queue in taken or queue.split(".")[0] == "magicflow":
            raise HTTPException(
                422,
                f"queue {queue!r} carries the service's own messages on its broker: choose "
                "another name, or another broker",
            )
        return
    if url.startswith("memory:"):
        raise HTTPException(
            422,
            "memory:// is a broker of its own in this process only: leave broker out to use "
            "the service's broker",
        )
    try:
        broker_from_url(url)
    except ConfigurationError as exc:
        raise HTTPException(422, f"broker: {exc}") from None


def _out(record: EventStreamRecord) -> EventStreamOut:
    return EventStreamOut(
        id=record.id,
        queue=record.queue,
        broker=None if record.broker is None else redact(record.broker),
        workflow=record.workflow,
        events=list(record.events),
        created_at=timestamp(record.created_at),
    )


@router.post("/event-streams", status_code=201, response_model=EventStreamOut, responses=_ERRORS)
async def create_event_stream(request: Request, body: EventStreamIn) -> Any:
    """Publish the events of executions (of ``workflow``, or all) to ``queue``: each event is
    one message, the JSON a webhook would get."""
    await check_target(engine_of(request), body.queue, body.broker)
    deliverer = deliverer_of(request)
    record = EventStreamRecord(
        id=new_stream_id(),
        queue=body.queue,
        events=tuple(dict.fromkeys(body.events)),
        created_at=deliverer.clock(),
        workflow=body.workflow,
        broker=body.broker,
    )
    await engine_of(request).store.save_event_stream(record)
    await deliverer.refresh()
    return _out(record)


@router.get("/event-streams", response_model=EventStreamList, responses=_ERRORS)
async def list_event_streams(request: Request) -> Any:
    records = await engine_of(request).store.list_event_streams()
    return EventStreamList(items=[_out(r) for r in records])


@router.delete("/event-streams/{stream_id}", status_code=204, responses=_ERRORS)
async def delete_event_stream(request: Request, stream_id: StreamId) -> Response:
    """Stop publishing to this stream (its delivery log stays readable)."""
    if not await engine_of(request).store.delete_event_stream(stream_id):
        raise HTTPException(404, f"no event stream {stream_id!r}")
    await deliverer_of(request).refresh()
    return Response(status_code=204)


@router.get("/event-streams/{stream_id}/deliveries", response_model=DeliveryList, responses=_ERRORS)
async def list_deliveries(
    request: Request,
    stream_id: StreamId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """The delivery log, newest first: status, attempts, last error, next attempt."""
    store = engine_of(request).store
    known = any(s.id == stream_id for s in await store.list_event_streams())
    return await delivery_log(store, stream_id, limit, known, f"no event stream {stream_id!r}")

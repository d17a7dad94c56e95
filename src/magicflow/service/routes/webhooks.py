"""Webhook subscriptions (admin): create, list, delete, and read their delivery log."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

from magicflow.service.auth import CanAdminister
from magicflow.service.deliveries import Deliverer
from magicflow.service.hook_schemas import (
    DeliveryList,
    DeliveryOut,
    WebhookCreated,
    WebhookIn,
    WebhookList,
    WebhookOut,
)
from magicflow.service.schemas import Problem
from magicflow.service.state import engine_of, timestamp
from magicflow.service.webhooks import new_secret, new_webhook_id
from magicflow.stores.base import DeliveryRecord, Store, WebhookRecord

router = APIRouter(tags=["webhooks"], dependencies=[CanAdminister])

WebhookId = Annotated[str, Path(max_length=200)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem},
}


def deliverer_of(request: Request) -> Deliverer:
    return cast(Deliverer, request.app.state.deliverer)


def _out(record: WebhookRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "url": record.url,
        "workflow": record.workflow,
        "events": list(record.events),
        "created_at": timestamp(record.created_at),
    }


def _delivery(record: DeliveryRecord) -> DeliveryOut:
    return DeliveryOut(
        id=record.id,
        event=record.event,
        status=record.status,  # type: ignore[arg-type]
        attempts=record.attempts,
        next_attempt=None if record.next_attempt is None else timestamp(record.next_attempt),
        last_status=record.last_status,
        last_error=record.last_error,
        created_at=timestamp(record.created_at),
    )


@router.post("/webhooks", status_code=201, response_model=WebhookCreated, responses=_ERRORS)
async def create_webhook(request: Request, body: WebhookIn) -> Any:
    """Subscribe ``url`` to the events of executions (of ``workflow``, or all). The answer
    shows the signing secret; no later answer does."""
    deliverer = deliverer_of(request)
    record = WebhookRecord(
        id=new_webhook_id(),
        url=body.url,
        secret=body.secret or new_secret(),
        events=tuple(dict.fromkeys(body.events)),
        created_at=deliverer.clock(),
        workflow=body.workflow,
    )
    await engine_of(request).store.save_webhook(record)
    await deliverer.refresh()
    return WebhookCreated(**_out(record), secret=record.secret)


@router.get("/webhooks", response_model=WebhookList, responses=_ERRORS)
async def list_webhooks(request: Request) -> Any:
    records = await engine_of(request).store.list_webhooks()
    return WebhookList(items=[WebhookOut(**_out(r)) for r in records])


@router.delete("/webhooks/{webhook_id}", status_code=204, responses=_ERRORS)
async def delete_webhook(request: Request, webhook_id: WebhookId) -> Response:
    """Stop delivering to this subscription (its delivery log stays readable)."""
    if not await engine_of(request).store.delete_webhook(webhook_id):
        raise HTTPException(404, f"no webhook {webhook_id!r}")
    await deliverer_of(request).refresh()
    return Response(status_code=204)


@router.get("/webhooks/{webhook_id}/deliveries", response_model=DeliveryList, responses=_ERRORS)
async def list_deliveries(
    request: Request,
    webhook_id: WebhookId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """The delivery log, newest first: status, attempts, last response, next attempt."""
    store = engine_of(request).store
    known = any(w.id == webhook_id for w in await store.list_webhooks())
    return await delivery_log(store, webhook_id, limit, known, f"no webhook {webhook_id!r}")


async def delivery_log(
    store: Store, subscription_id: str, limit: int, known: bool, unknown: str
) -> DeliveryList:
    """The deliveries of a subscription; 404 (``unknown``) for one that is not ``known``
    and has none (a deleted subscription's log stays readable)."""
    records = await store.list_deliveries(subscription_id, limit)
    if not records and not known:
        raise HTTPException(404, unknown)
    return DeliveryList(items=[_delivery(r) for r in records])

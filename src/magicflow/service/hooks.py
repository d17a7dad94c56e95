"""Webhooks and schedules in the service: ``install(app, engine)`` adds their routes and the
background workers, which whoever runs the server enters (``async with running(app)``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from magicflow.service.engine import Engine
from magicflow.service.routes import schedules, webhooks
from magicflow.service.scheduler import Scheduler
from magicflow.service.webhooks import WebhookDeliverer


def install(app: FastAPI, engine: Engine, responses: dict[int | str, dict[str, Any]]) -> None:
    deliverer = WebhookDeliverer(engine.store)
    engine.driver.add_listener(deliverer.notify)
    app.state.webhooks = deliverer
    app.state.scheduler = Scheduler(engine)
    app.include_router(webhooks.router, prefix="/api/v1", responses=responses)
    app.include_router(schedules.router, prefix="/api/v1", responses=responses)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[None]:
    """Deliver webhooks and fire schedules while in the block."""
    async with app.state.webhooks, app.state.scheduler:
        yield

"""Webhooks, event streams, triggers and schedules in the service: ``install(app, engine)``
adds their routes and the background workers, which whoever runs the server enters
(``async with running(app)``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from magicflow.service.broker_pool import BrokerPool
from magicflow.service.deliveries import Deliverer
from magicflow.service.engine import Engine
from magicflow.service.routes import event_streams, schedules, triggers, webhooks
from magicflow.service.scheduler import Scheduler
from magicflow.service.triggers import Triggers


def install(app: FastAPI, engine: Engine, responses: dict[int | str, dict[str, Any]]) -> None:
    brokers = BrokerPool(engine.broker)
    deliverer = Deliverer(engine.store, brokers)
    engine.driver.set_deliveries(deliverer.deliveries_for)
    engine.driver.add_listener(deliverer.notify)
    app.state.brokers = brokers
    app.state.deliverer = deliverer
    app.state.scheduler = Scheduler(engine)
    consumers = Triggers(engine, brokers)
    consumers.listeners.append(app.state.service.metrics.record_trigger)
    app.state.triggers = consumers
    for module in (webhooks, event_streams, schedules, triggers):
        app.include_router(module.router, prefix="/api/v1", responses=responses)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[None]:
    """Deliver webhooks and event streams, fire schedules, consume triggers while in the
    block; then close the brokers they opened."""
    try:
        async with app.state.deliverer, app.state.scheduler, app.state.triggers:
            yield
    finally:
        await app.state.brokers.close()

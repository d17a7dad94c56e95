"""Health: ``/health`` (every check), ``/health/live`` (the process answers), ``/health/ready``
(the store answers and the server is not shutting down; 503 otherwise).

``live_router`` is always open; ``create_app`` guards ``router`` (and ``/metrics``) with a key
when ``ServiceSettings.open_health`` is off, so that /openapi.json says which it is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from magicflow import __version__
from magicflow.service.schemas import CheckOut, HealthOut
from magicflow.service.state import ServiceState, service_of, timestamp

router = APIRouter(tags=["health"])
live_router = APIRouter(tags=["health"])

HEALTHY, DEGRADED, UNHEALTHY, UNKNOWN = "healthy", "degraded", "unhealthy", "unknown"
SLOW = 1.0  # seconds: a check that answers slower than this is "degraded"
_HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {503: {"model": HealthOut}}


async def _timed(probe: Callable[[], Awaitable[str]], limit: float) -> CheckOut:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(limit):
            message = await probe()
        elapsed = time.perf_counter() - started
        status = HEALTHY if elapsed < SLOW else DEGRADED
    except TimeoutError:
        status, message = UNHEALTHY, f"no answer within {limit:g} s"
    except Exception as exc:  # a failing backend is what this reports
        status, message = UNHEALTHY, f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - started
    return CheckOut(
        status=status,
        message=message,
        duration_ms=round(elapsed * 1000, 3),
        last_checked=timestamp(time.time()),
    )


async def _checks(service: ServiceState) -> dict[str, CheckOut]:
    engine = service.engine
    timeout = service.settings.health_timeout

    async def store() -> str:
        await engine.store.load("health-check")
        return f"{type(engine.store).__name__} answers"

    async def broker() -> str:
        await engine.broker.dead_letters("default", 1)
        return f"{type(engine.broker).__name__} answers"

    store_check, broker_check = await asyncio.gather(
        _timed(store, timeout), _timed(broker, timeout)
    )
    return {"store": store_check, "broker": broker_check, "executors": _executors(service)}


def _executors(service: ServiceState) -> CheckOut:
    engine = service.engine
    now = timestamp(time.time())
    if engine.registry is None:
        return CheckOut(
            status=UNKNOWN,
            message="no executor in this process: steps are run by `magic-flow executor`",
            duration_ms=0.0,
            last_checked=now,
        )
    functions = len(engine.registry.names())
    return CheckOut(
        status=HEALTHY,
        message=f"an executor runs in this process ({functions} functions)",
        duration_ms=0.0,
        last_checked=now,
    )


def overall(checks: dict[str, CheckOut]) -> str:
    statuses = {check.status for check in checks.values()}
    for status in (UNHEALTHY, DEGRADED):
        if status in statuses:
            return status
    return HEALTHY if HEALTHY in statuses else UNKNOWN


@live_router.get("/health/live")
async def live() -> dict[str, str]:
    """The process answers (never needs a key)."""
    return {"status": "alive", "timestamp": timestamp(time.time())}


@router.get(
    "/health",
    response_model=HealthOut,
    responses=_HEALTH_RESPONSES,
)
async def health(request: Request) -> Any:
    """Every check (store, broker, executors) and the worst of them; 503 when unhealthy."""
    service = service_of(request)
    checks = await _checks(service)
    status = overall(checks)
    body = HealthOut(
        status=status,
        timestamp=timestamp(time.time()),
        version=__version__,
        checks=checks,
        metadata={
            "store": type(service.engine.store).__name__,
            "broker": type(service.engine.broker).__name__,
            "auth": service.settings.auth,
            "ready": service.ready,
        },
    )
    if status == UNHEALTHY:
        return JSONResponse(body.model_dump(), status_code=503)
    return body


@router.get(
    "/health/ready",
    responses={503: {"description": "Not ready (starting, shutting down, or store down)."}},
)
async def ready(request: Request) -> Any:
    """Ready to take requests: the store answers and the server is not shutting down."""
    service = service_of(request)
    store = await _timed(_store_probe(service), service.settings.health_timeout)
    ok = service.ready and store.status in (HEALTHY, DEGRADED)
    body = {
        "status": "ready" if ok else "not ready",
        "timestamp": timestamp(time.time()),
        "checks": {"store": store.model_dump()},
    }
    if not service.ready:
        body["reason"] = "shutting down"
    return body if ok else JSONResponse(body, status_code=503)


def _store_probe(service: ServiceState) -> Callable[[], Awaitable[str]]:
    async def probe() -> str:
        await service.engine.store.load("health-check")
        return "store answers"

    return probe

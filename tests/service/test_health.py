"""Health: every check, the overall status, readiness while shutting down."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from magicflow.service import Engine
from magicflow.service.routes.health import overall
from magicflow.service.schemas import CheckOut


async def test_health_reports_every_check(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["version"]
    assert body["timestamp"].endswith("Z")
    assert set(body["checks"]) == {"store", "broker", "executors"}
    for check in body["checks"].values():
        assert set(check) == {"status", "message", "duration_ms", "last_checked"}
        assert check["status"] == "healthy"
    assert body["metadata"]["store"] == "SQLiteStore"


async def test_ready_is_503_once_shutting_down(anonymous: httpx.AsyncClient, app: FastAPI) -> None:
    assert (await anonymous.get("/health/ready")).json()["status"] == "ready"
    app.state.service.ready = False
    response = await anonymous.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["reason"] == "shutting down"
    assert (await anonymous.get("/health/live")).status_code == 200


async def test_a_store_that_fails_makes_health_unhealthy(
    anonymous: httpx.AsyncClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(execution_id: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(engine.store, "load", broken)
    response = await anonymous.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert "disk on fire" in body["checks"]["store"]["message"]
    assert (await anonymous.get("/health/ready")).status_code == 503


def check(status: str) -> CheckOut:
    return CheckOut(status=status, message="", duration_ms=0.0, last_checked="")


def test_the_overall_status_is_the_worst_known_one() -> None:
    assert overall({"a": check("healthy"), "b": check("unknown")}) == "healthy"
    assert overall({"a": check("healthy"), "b": check("degraded")}) == "degraded"
    assert overall({"a": check("degraded"), "b": check("unhealthy")}) == "unhealthy"
    assert overall({"a": check("unknown")}) == "unknown"

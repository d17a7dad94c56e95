"""The HTTP API through httpx's ASGI transport, against a real Engine on a temporary SQLite
file, with an executor in process and one API key per role (plus a revoked one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from magicflow.errors import NonRetryableError
from magicflow.executor import Registry, StepContext
from magicflow.service import Engine
from magicflow.service.app import create_app
from magicflow.service.keys import Role, create_key
from magicflow.service.settings import ServiceSettings

GREET = """\
name: greet
version: "1.0.0"
description: Say hello
input_schema:
  type: object
  required: [name]
  properties: {name: {type: string}}
steps:
  - id: hello
    function: hello
"""

APPROVAL = """\
name: approval
version: "1.0.0"
steps:
  - id: ask
    wait_for: approve
  - id: done
    function: hello
    depends_on: [ask]
    input: {name: "${steps.ask.output.by}"}
"""

BROKEN = """\
name: broken
version: "1.0.0"
steps:
  - id: boom
    function: boom
"""

YAML = {"Content-Type": "application/yaml"}


def _hello(ctx: StepContext) -> dict[str, Any]:
    return {"greeting": f"hello {ctx.input['name']}"}


def _boom(ctx: StepContext) -> None:
    raise NonRetryableError("boom")


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    registry = Registry()
    registry.register("hello", _hello)
    registry.register("boom", _boom)
    store = f"sqlite:///{tmp_path / 'service.db'}"
    async with Engine(store=store, registry=registry, shutdown_grace=0.5) as running:
        yield running


@pytest.fixture
def settings() -> ServiceSettings:
    return ServiceSettings(heartbeat=0.2)


@pytest.fixture
def app(engine: Engine, settings: ServiceSettings) -> FastAPI:
    return create_app(engine, settings)


@pytest.fixture
async def keys(engine: Engine) -> dict[str, str]:
    """role -> key; also "revoked" (an admin key, revoked) and "unknown" (never stored)."""
    made: dict[str, str] = {}
    for role in Role:
        made[role.value], _ = await create_key(engine.store, role)
    made["revoked"], record = await create_key(engine.store, Role.ADMIN)
    await engine.store.revoke_api_key(record.id, 1.0)
    made["unknown"] = "mf_" + "x" * 43
    return made


@pytest.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def admin(app: FastAPI, keys: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {keys['admin']}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers=headers
    ) as client:
        yield client


async def register(client: httpx.AsyncClient, text: str) -> httpx.Response:
    return await client.post("/api/v1/workflows", content=text, headers=YAML)


async def wait_status(
    client: httpx.AsyncClient, execution_id: str, *statuses: str
) -> dict[str, Any]:
    """The execution's document once its status is one of ``statuses`` (10 s at most)."""
    async with asyncio.timeout(10):
        while True:
            document: dict[str, Any] = (
                await client.get(f"/api/v1/executions/{execution_id}")
            ).json()
            if document["status"] in statuses:
                return document
            await asyncio.sleep(0.01)

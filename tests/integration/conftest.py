"""Driver + store + in-process broker + executor, end to end, on every store backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from magicflow.dsl import compile_workflow
from magicflow.executor import Registry
from magicflow.service import Engine
from magicflow.stores import Store
from magicflow.stores.memory import MemoryStore

from ..service_stores import postgresql_url, redis_url

EngineFactory = Callable[..., AbstractAsyncContextManager[Engine]]


@pytest.fixture(
    params=[
        "sqlite",
        "memory",
        pytest.param("postgresql", marks=pytest.mark.services),
        pytest.param("redis", marks=pytest.mark.services),
    ]
)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str | Store]:
    """A SQLite file, one in-memory store shared by the engines of a test (restarts), or a
    fresh PostgreSQL schema or Redis key prefix."""
    if request.param == "postgresql":
        async with postgresql_url() as url:
            yield url
    elif request.param == "redis":
        async with redis_url() as url:
            yield url
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'engine.db'}"
    else:
        yield MemoryStore()


@pytest.fixture
def make_engine(store_url: str | Store) -> EngineFactory:
    @asynccontextmanager
    async def factory(
        registry: Registry | None = None, *workflows: str, **options: Any
    ) -> AsyncIterator[Engine]:
        options.setdefault("shutdown_grace", 0.5)
        async with Engine(store=store_url, registry=registry, **options) as engine:
            for text in workflows:
                await engine.register(compile_workflow(text, "test.yaml"))
            yield engine

    return factory


def registry_of(**functions: Callable[..., Any]) -> Registry:
    registry = Registry()
    for name, fn in functions.items():
        registry.register(name, fn)
    return registry

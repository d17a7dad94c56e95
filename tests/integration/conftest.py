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

EngineFactory = Callable[..., AbstractAsyncContextManager[Engine]]


@pytest.fixture(params=["sqlite", "memory"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | Store:
    """A SQLite file, or one in-memory store shared by the engines of a test (restarts)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'engine.db'}"
    return MemoryStore()


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

"""State stores. ``store_from_url(url)`` picks the backend from the URL scheme and imports it
lazily, so a missing optional driver is a clear message, not an ImportError at start-up."""

from __future__ import annotations

from urllib.parse import urlsplit

from magicflow.errors import ConfigurationError
from magicflow.stores.base import (
    ApiKeyRecord,
    CommitResult,
    DefinitionRecord,
    EventRecord,
    ExecutionPage,
    ExecutionRecord,
    OutboxMessage,
    Store,
    TimerRecord,
    Transition,
)

__all__ = [
    "ApiKeyRecord",
    "CommitResult",
    "DefinitionRecord",
    "EventRecord",
    "ExecutionPage",
    "ExecutionRecord",
    "OutboxMessage",
    "Store",
    "TimerRecord",
    "Transition",
    "store_from_url",
]


def store_from_url(url: str) -> Store:
    """A store for ``url``: ``sqlite:///PATH`` or ``memory://`` (PostgreSQL and Redis arrive
    with their extras). The store is not opened yet: ``await store.open()``."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from magicflow.stores.sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if scheme == "memory":
        from magicflow.stores.memory import MemoryStore

        return MemoryStore()
    if scheme in ("postgresql", "postgres", "redis"):
        raise ConfigurationError(
            f"the {scheme} store is not available yet; use sqlite:///PATH (the embedded default)"
        )
    raise ConfigurationError(f"unsupported store URL {url!r}: expected sqlite:///PATH or memory://")

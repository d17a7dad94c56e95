"""State stores. ``store_from_url(url)`` picks the backend from the URL scheme and imports it
lazily, so a missing optional driver is a clear message, not an ImportError at start-up."""

from __future__ import annotations

from urllib.parse import urlsplit

from magicflow.errors import ConfigurationError
from magicflow.stores.base import (
    ApiKeyRecord,
    CommitResult,
    DefinitionRecord,
    DeliveryRecord,
    EventRecord,
    EventStreamRecord,
    ExecutionPage,
    ExecutionRecord,
    OutboxMessage,
    ScheduleRecord,
    Store,
    TimerRecord,
    Transition,
    TriggerRecord,
    WebhookRecord,
)

__all__ = [
    "ApiKeyRecord",
    "CommitResult",
    "DefinitionRecord",
    "DeliveryRecord",
    "EventRecord",
    "EventStreamRecord",
    "ExecutionPage",
    "ExecutionRecord",
    "OutboxMessage",
    "ScheduleRecord",
    "Store",
    "TimerRecord",
    "Transition",
    "TriggerRecord",
    "WebhookRecord",
    "store_from_url",
]


def store_from_url(url: str) -> Store:
    """A store for ``url``: ``sqlite:///PATH``, ``memory://``, ``postgresql://...`` or
    ``redis://...`` (the last two need their extras). The store is not opened yet:
    ``await store.open()``."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from magicflow.stores.sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if scheme == "memory":
        from magicflow.stores.memory import MemoryStore

        return MemoryStore()
    if scheme in ("postgresql", "postgres"):
        try:
            from magicflow.stores.postgresql import PostgreSQLStore
        except ImportError as exc:
            raise _missing("postgresql", "asyncpg", exc) from exc
        return PostgreSQLStore.from_url(url)
    if scheme in ("redis", "rediss"):
        try:
            from magicflow.stores.redis import RedisStore
        except ImportError as exc:
            raise _missing("redis", "redis", exc) from exc
        return RedisStore.from_url(url)
    raise ConfigurationError(
        f"unsupported store URL {url!r}: expected sqlite:///PATH, memory://, "
        "postgresql://... or redis://..."
    )


def _missing(extra: str, module: str, exc: ImportError) -> ConfigurationError:
    if exc.name not in (module, None) and not (exc.name or "").startswith(module + "."):
        raise exc
    return ConfigurationError(
        f"the {extra} store needs the {module!r} package: pip install 'magicflow[{extra}]'"
    )

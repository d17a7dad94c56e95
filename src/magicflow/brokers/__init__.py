"""Message brokers. ``connect(url)`` picks the backend from the URL scheme and imports it lazily,
so a missing optional driver is a clear message, not an ImportError at start-up."""

from __future__ import annotations

from urllib.parse import urlsplit

from magicflow.brokers.base import RESULTS_QUEUE, Broker, Delivery
from magicflow.errors import ConfigurationError

__all__ = ["RESULTS_QUEUE", "Broker", "Delivery", "broker_from_url"]


def broker_from_url(url: str) -> Broker:
    """A broker for ``url`` (``memory://``; networked backends arrive with their extras)."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from magicflow.brokers.memory import MemoryBroker

        return MemoryBroker()
    raise ConfigurationError(
        f"unsupported broker URL {url!r}: expected memory:// "
        "(redis://, amqp://, nats:// and kafka:// need their backends)"
    )

"""The brokers that event triggers and event streams talk to: the service's own broker (a
trigger or stream without a ``broker`` URL), or one connection per other URL, made on first
use, shared, and closed when the pool is."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

from magicflow.brokers import Broker, broker_from_url


def redact(url: str) -> str:
    """``url`` without its password (``amqp://user:***@host/``), for answers and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))


class BrokerPool:
    def __init__(self, default: Broker) -> None:
        self.default = default
        self._made: dict[str, Broker] = {}
        self._lock = asyncio.Lock()

    async def get(self, url: str | None) -> Broker:
        """The broker of ``url`` (connected); the service's own for None. Raises what
        connecting raises (``BrokerError``, ``ConfigurationError``)."""
        if url is None:
            return self.default
        async with self._lock:
            broker = self._made.get(url)
            if broker is None:
                broker = broker_from_url(url)
                await broker.connect()
                self._made[url] = broker
            return broker

    async def close(self) -> None:
        made, self._made = self._made, {}
        for broker in made.values():
            await broker.close()

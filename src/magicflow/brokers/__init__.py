"""Message brokers. ``broker_from_url(url)`` picks the backend from the URL scheme and imports it
lazily, so a missing optional driver is a clear message, not an ImportError at start-up.
``?namespace=NAME`` (any backend) prefixes every queue name: see ``namespace.py``."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from magicflow.brokers.base import RESULTS_QUEUE, Broker, Delivery
from magicflow.errors import ConfigurationError

__all__ = ["RESULTS_QUEUE", "Broker", "Delivery", "broker_from_url"]

# scheme -> (extra to install, the driver's top-level module)
_EXTRAS = {
    "redis": ("redis", "redis"),
    "rediss": ("redis", "redis"),
    "amqp": ("rabbitmq", "aio_pika"),
    "amqps": ("rabbitmq", "aio_pika"),
    "nats": ("nats", "nats"),
    "tls": ("nats", "nats"),
    "kafka": ("kafka", "aiokafka"),
}


def broker_from_url(url: str) -> Broker:
    """A broker for ``url``: ``memory://``, ``redis://HOST:PORT/DB``,
    ``amqp://USER:PASSWORD@HOST:PORT/VHOST``, ``nats://HOST:PORT``,
    ``kafka://HOST:PORT[,HOST:PORT]``; with ``namespace=NAME``
    in the query, its queues are those of that namespace only."""
    parts = urlsplit(url)
    options = parse_qsl(parts.query, keep_blank_values=True)
    namespaces = [value for key, value in options if key == "namespace"]
    if not namespaces:
        return _backend(url)
    from magicflow.brokers.namespace import NamespacedBroker, check_namespace

    rest = urlencode([(key, value) for key, value in options if key != "namespace"])
    backend = _backend(urlunsplit(parts._replace(query=rest)))
    if parts.scheme == "memory":  # one process: nothing to share the queues with
        check_namespace(namespaces[-1])
        return backend
    return NamespacedBroker(backend, namespaces[-1])


def _backend(url: str) -> Broker:
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from magicflow.brokers.memory import MemoryBroker

        return MemoryBroker()
    if scheme not in _EXTRAS:
        raise ConfigurationError(
            f"unsupported broker URL {url!r}: expected memory://, redis://, amqp://, nats:// or kafka://"
        )
    extra, driver = _EXTRAS[scheme]
    try:
        if extra == "redis":
            from magicflow.brokers.redis import RedisBroker

            return RedisBroker(url)
        if extra == "rabbitmq":
            from magicflow.brokers.rabbitmq import RabbitMQBroker

            return RabbitMQBroker(url)
        if extra == "nats":
            from magicflow.brokers.nats import NatsBroker

            return NatsBroker(url)
        from magicflow.brokers.kafka import KafkaBroker

        return KafkaBroker(url)
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] != driver:
            raise
        raise ConfigurationError(
            f"the {scheme}:// broker needs its driver: pip install 'magicflow[{extra}]'"
        ) from None

"""What the routes share: the engine, the settings, the event hub, the metrics (on
``app.state.service``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from starlette.requests import Request

if TYPE_CHECKING:
    from magicflow.service.engine import Engine
    from magicflow.service.events import EventHub
    from magicflow.service.keys import KeyCache
    from magicflow.service.metrics import Metrics
    from magicflow.service.settings import ServiceSettings


@dataclass(slots=True)
class ServiceState:
    engine: Engine
    settings: ServiceSettings
    hub: EventHub
    metrics: Metrics
    keys: KeyCache
    ready: bool = True  # False once the server is shutting down


def service_of(request: Request) -> ServiceState:
    return cast(ServiceState, request.app.state.service)


def engine_of(request: Request) -> Engine:
    return service_of(request).engine


def timestamp(at: float) -> str:
    """RFC 3339, UTC, milliseconds (as execution documents have them)."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

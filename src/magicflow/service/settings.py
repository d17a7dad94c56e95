"""Settings of the HTTP service (read by ``magic-flow server``, given to ``create_app``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """``auth``: require an API key (``--no-auth`` is for local development only).
    ``open_health``: ``/health``, ``/health/ready`` and ``/metrics`` answer without a key
    (``/health/live``, ``/openapi.json`` and ``/docs`` always do). ``max_body_bytes``: larger
    requests get 413.
    ``heartbeat``: seconds between keep-alive comments on an idle event stream.
    ``key_cache_seconds``: how long a verified API key is trusted without reading the store
    again, so the longest a revoked key still works here (0: read the store every request)."""

    auth: bool = True
    open_health: bool = True
    max_body_bytes: int = 4 * 1024 * 1024
    heartbeat: float = 15.0
    health_timeout: float = 5.0
    key_cache_seconds: float = 5.0

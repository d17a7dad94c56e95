"""Settings for the command line and the service, read only at those edges.

Precedence: command-line flags, then environment variables (``MAGICFLOW_STORE``,
``MAGICFLOW_BROKER``, ...), then a TOML config file (``--config FILE``, ``MAGICFLOW_CONFIG``,
or ``magicflow.toml`` in the current directory), then the built-in defaults.

```toml
# magicflow.toml
store = "postgresql://localhost/magicflow"
broker = "redis://localhost:6379/0"
concurrency = 64
queues = ["default", "email"]
log_format = "json"
tracing = true
```
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from magicflow.errors import ConfigurationError

ENV_PREFIX = "MAGICFLOW_"
DEFAULT_CONFIG_FILE = "magicflow.toml"


@dataclass(frozen=True, slots=True)
class Settings:
    store: str | None = None  # None: a temporary SQLite file (run) or ./magicflow.db (server)
    broker: str = "memory://"
    handlers: str | None = None
    concurrency: int = 100
    queues: tuple[str, ...] = ("default",)
    host: str = "127.0.0.1"
    port: int = 8080
    log_format: str = "text"  # or "json": one JSON object per line on stderr
    tracing: bool = False  # OpenTelemetry spans (also on when OTEL_TRACES_EXPORTER is set)
    partitions: int = 16  # how executions are split between service instances (same on all)
    lease_ttl: float = 10.0  # seconds an instance's hold on its partitions lasts unrenewed


def _coerce(name: str, value: Any) -> Any:
    default = getattr(Settings(), name)
    try:
        if isinstance(default, bool):
            return str(value).lower() in {"1", "true", "yes", "on"}
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(item).strip() for item in items if str(item).strip())
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"setting {name!r}: cannot use {value!r} ({exc})") from None
    return None if value is None else str(value)


def _from_mapping(source: str, values: Mapping[str, Any]) -> dict[str, Any]:
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigurationError(
            f"{source}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(known))}"
        )
    return {name: _coerce(name, value) for name, value in values.items()}


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Merge defaults, config file, environment and flags (flags given as None are ignored)."""
    env = os.environ if environ is None else environ
    settings = Settings()
    path = config_file or env.get(f"{ENV_PREFIX}CONFIG")
    if path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"config file {path}: {exc}") from None
        settings = replace(settings, **_from_mapping(str(path), data))
    from_env = {
        f.name: env[ENV_PREFIX + f.name.upper()]
        for f in fields(Settings)
        if ENV_PREFIX + f.name.upper() in env
    }
    settings = replace(settings, **_from_mapping("environment", from_env))
    given = {name: value for name, value in (flags or {}).items() if value is not None}
    return replace(settings, **_from_mapping("flags", given))

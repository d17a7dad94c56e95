"""``magic-flow server``: the workflow service (HTTP API and orchestrator) in this process.

Embedded by default: a SQLite file ``magicflow.db`` in the working directory and the
in-process broker. ``--handlers`` also runs an executor in this process. SIGTERM or SIGINT
(Ctrl-C) shuts down in phases and loses nothing: the server stops taking requests and ends
the event streams, requests under way finish, local executors finish the steps they run,
the engine commits its last batch, then the store closes. A second Ctrl-C stops at once.

Auth is on: every call to ``/api/v1`` needs ``Authorization: Bearer <key>``. Make the first
admin key with ``magic-flow keys create --role admin`` (same ``--store``), before starting or
while the server runs. ``--no-auth`` is for local development only.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from magicflow.cli.app import LogFormatOption, app, fail
from magicflow.cli.app import Settings as CliSettings
from magicflow.config import Settings, load_settings
from magicflow.errors import MagicFlowError
from magicflow.logs import configure as configure_logging
from magicflow.telemetry import tracing

if TYPE_CHECKING:
    import uvicorn
    from opentelemetry.sdk.trace import TracerProvider

    from magicflow.executor import Registry
    from magicflow.service.settings import ServiceSettings
    from magicflow.service.state import ServiceState
    from magicflow.stores import Store

DEFAULT_STORE = "sqlite:///magicflow.db"
_SIGNALS = (signal.SIGINT, signal.SIGTERM)

logger = logging.getLogger("magicflow.server")


@app.command("server")
def server(
    host: Annotated[
        str | None, typer.Option("--host", help="Interface to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 8080).")] = None,
    store: Annotated[
        str | None,
        typer.Option("--store", help=f"Store URL (default: {DEFAULT_STORE}, in this directory)."),
    ] = None,
    broker: Annotated[
        str | None, typer.Option("--broker", help="Broker URL (default: memory://).")
    ] = None,
    handlers: Annotated[
        str | None,
        typer.Option("--handlers", help="Module or .py file: also run an executor in process."),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="Steps the local executor runs at once.")
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="Serve without API keys (local development only)."),
    ] = False,
    protect_health: Annotated[
        bool,
        typer.Option("--protect-health", help="/health, /health/ready and /metrics need a key."),
    ] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
    log_format: LogFormatOption = None,
) -> None:
    """Run the workflow service: HTTP API (/api/v1, /docs), orchestrator, optional executor."""
    from magicflow.service.settings import ServiceSettings

    settings = load_settings(
        {
            "host": host,
            "port": port,
            "store": store,
            "broker": broker,
            "handlers": handlers,
            "concurrency": concurrency,
            "log_format": log_format,
        }
    )
    registry = None
    if settings.handlers:
        from magicflow.executor import load_handlers

        registry = load_handlers(settings.handlers)
    service = ServiceSettings(auth=not no_auth, open_health=not protect_health)
    level = "debug" if CliSettings.debug else log_level.lower()
    if level not in ("debug", "info", "warning", "error"):
        fail(f"--log-level must be debug, info, warning or error, not {log_level!r}")
    try:
        configure_logging(level.upper(), settings.log_format)
        with (
            tracing(settings.tracing, "magicflow-server") as provider,
            asyncio.Runner(loop_factory=_loop_factory()) as runner,
        ):
            error = runner.run(_serve(settings, service, registry, level, provider))
    except MagicFlowError as exc:
        fail(str(exc))
    if error is not None:
        fail(str(error))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (a dependency, except on Windows): it serves
    HTTP with less CPU per request than asyncio's own; None keeps asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve(
    settings: Settings,
    service: ServiceSettings,
    registry: Registry | None,
    level: str,
    tracer_provider: TracerProvider | None,
) -> MagicFlowError | None:
    """Serve until a signal; the error that kept the server from starting, if any (returned:
    raised inside ``async with Engine`` it would come out wrapped in an ExceptionGroup)."""
    import uvicorn

    from magicflow.service.app import create_app
    from magicflow.service.engine import Engine
    from magicflow.service.hooks import running as hooks_running

    store_url = settings.store or DEFAULT_STORE
    engine = Engine(
        store=store_url,
        broker=settings.broker,
        registry=registry,
        concurrency=settings.concurrency,
        queues=settings.queues,
        tracer_provider=tracer_provider,
        partitions=settings.partitions,
        lease_ttl=settings.lease_ttl,
    )
    async with engine:
        try:
            if service.auth:
                await _check_keys(engine.store, store_url)
            else:
                logger.warning("auth is off (--no-auth): anyone who reaches the port is admin")
            if registry is None and settings.broker.startswith("memory:"):
                logger.warning(
                    "no --handlers with the in-process broker (memory://): nothing will run "
                    "the steps; pass --handlers, or a shared --broker for `magic-flow executor`"
                )
        except MagicFlowError as exc:
            return exc
        app = create_app(engine, service)
        state: ServiceState = app.state.service
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=level,
            lifespan="off",
            timeout_graceful_shutdown=10,
            log_config=None,
        )
        async with hooks_running(app):  # webhook deliveries, cron schedules
            await _graceful_server(config, state).serve()
        logger.info("HTTP server stopped; stopping executors and the engine")
    logger.info("stopped")
    return None


async def _check_keys(store: Store, store_url: str) -> None:
    """No key at all: say how to make one (or, with a memory:// store that no other process
    can reach, make the first admin key and show it once)."""
    if any(not key.revoked for key in await store.list_api_keys()):
        return
    if store_url.startswith("memory:"):
        from magicflow.service.keys import Role, create_key

        key, _ = await create_key(store, Role.ADMIN, "bootstrap")
        typer.echo(f"magic-flow: admin API key (memory store, shown once): {key}", err=True)
        return
    logger.warning(
        "no API key yet: every request will get 401. Create one (also while the server runs): "
        "magic-flow keys create --role admin --store %s",
        store_url,
    )


def _graceful_server(config: uvicorn.Config, state: ServiceState) -> uvicorn.Server:
    """uvicorn's server, with our signal handling: a signal starts the graceful shutdown (not
    ready any more, event streams end, requests under way finish) and is not raised again
    once the server has stopped, so that the engine then stops in its own phases."""
    import uvicorn

    class GracefulServer(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            loop = asyncio.get_running_loop()
            for sig in _SIGNALS:
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in _SIGNALS:
                    loop.remove_signal_handler(sig)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not self.should_exit:
                logger.info("shutting down (%s)", signal.Signals(sig).name)
                state.ready = False
                state.hub.close()
            super().handle_exit(sig, frame)

    return GracefulServer(config)

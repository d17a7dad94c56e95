"""``magic-flow executor``: an executor process serving queues of a shared broker.

It runs until SIGTERM or SIGINT, then shuts down gracefully: it stops taking tasks, lets the
running steps finish (up to ``--shutdown-grace`` seconds), gives the rest back to the broker,
publishes the last results and closes. A second signal stops at once (unfinished tasks are
delivered again elsewhere). Problems are one line on stderr; logs go to stderr too.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import ExitStack
from typing import TYPE_CHECKING, Annotated

import typer

from magicflow.cli.app import LogFormatOption, app, fail
from magicflow.cli.app import Settings as CliSettings
from magicflow.config import Settings, load_settings
from magicflow.errors import MagicFlowError
from magicflow.logs import configure as configure_logging
from magicflow.telemetry import tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from magicflow.brokers import Broker
    from magicflow.executor import Registry

logger = logging.getLogger("magicflow.cli.executor")


@app.command("executor")
def executor(
    handlers: Annotated[
        str | None,
        typer.Option("--handlers", help="Module name or .py file with the business functions."),
    ] = None,
    broker: Annotated[
        str | None,
        typer.Option(
            "--broker", help="Broker URL: redis://..., amqp://..., nats://... or kafka://..."
        ),
    ] = None,
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", help="A queue to serve (repeatable; default: default)."),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="Steps run at once (default 100).")
    ] = None,
    shutdown_grace: Annotated[
        float,
        typer.Option("--shutdown-grace", help="Seconds running steps get to finish on stop."),
    ] = 30.0,
    log_format: LogFormatOption = None,
) -> None:
    """Run business functions for the workflows of a shared broker, until stopped."""
    with ExitStack() as stack:
        try:
            settings = load_settings(
                {
                    "broker": broker,
                    "handlers": handlers,
                    "queues": queue,
                    "concurrency": concurrency,
                    "log_format": log_format,
                }
            )
            if not settings.handlers:
                fail("--handlers is required: a module or .py file with the business functions")
            if settings.broker.startswith("memory:"):
                fail(
                    "an executor process needs a shared --broker "
                    "(redis://, amqp://, nats:// or kafka://)"
                )
            if settings.concurrency < 1:
                fail("--concurrency must be at least 1")
            from magicflow.brokers import broker_from_url
            from magicflow.executor import load_handlers

            backend = broker_from_url(settings.broker)
            registry = load_handlers(settings.handlers)
            level = logging.DEBUG if CliSettings.debug else logging.INFO
            configure_logging(level, settings.log_format)
            provider = stack.enter_context(tracing(settings.tracing, "magicflow-executor"))
        except MagicFlowError as exc:
            fail(str(exc))
        try:
            asyncio.run(_serve(backend, settings, registry, shutdown_grace, provider))
        except MagicFlowError as exc:
            fail(str(exc), code=1)


async def _serve(
    broker: Broker,
    settings: Settings,
    registry: Registry,
    shutdown_grace: float,
    tracer_provider: TracerProvider | None,
) -> None:
    from magicflow.executor import Executor

    await broker.connect()
    try:
        worker = Executor(
            broker,
            registry,
            queues=settings.queues,
            concurrency=settings.concurrency,
            shutdown_grace=shutdown_grace,
            tracer_provider=tracer_provider,
        )
        main = asyncio.current_task()
        loop = asyncio.get_running_loop()
        signalled: list[int] = []

        def on_signal(signum: int) -> None:
            signalled.append(signum)
            if len(signalled) > 1 and main is not None:  # the second signal: stop now
                logger.warning("stopping now")
                main.cancel()
                return
            logger.info("%s: shutting down (again to stop now)", signal.Signals(signum).name)
            worker.stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            await worker.run_until_stopped()
        except asyncio.CancelledError:
            logger.warning("stopped before the running steps finished")
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    finally:
        await broker.close()

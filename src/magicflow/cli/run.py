"""``magic-flow run FILE``: one execution, embedded in this process, and its result.

Exit codes: 0 completed; 1 failed, timed out or cancelled; 2 invalid definition, input or
usage. With ``--output json`` stdout carries exactly one JSON document (the SPEC §3 result,
or ``{"error": ...}`` when nothing could be started); logs go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from magicflow.cli.app import LogFormatOption, app
from magicflow.cli.app import Settings as CliSettings
from magicflow.config import Settings, load_settings
from magicflow.dsl import Diagnostic, WorkflowPlan, load_library, load_workflow, validate_input
from magicflow.errors import MagicFlowError
from magicflow.logs import configure as configure_logging
from magicflow.telemetry import tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from magicflow.cli.progress import Progress
    from magicflow.executor import Registry


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class _Usage(Exception):
    """A problem found before anything started: exit 2, as one line or one JSON document."""

    def __init__(self, message: str, diagnostics: list[Diagnostic] | None = None) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics or []


@app.command("run")
def run(
    file: Annotated[str, typer.Argument(metavar="FILE", help="The workflow YAML file.")],
    handlers: Annotated[
        str | None,
        typer.Option("--handlers", help="Module name or .py file with the business functions."),
    ] = None,
    input_text: Annotated[
        str | None, typer.Option("--input", help="The execution input: JSON, or @file.json.")
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("--output", help="text (progress and a table) or json.")
    ] = OutputFormat.TEXT,
    workflows: Annotated[
        list[str] | None,
        typer.Option("--workflows", help="Directory with sub-workflow definitions (repeatable)."),
    ] = None,
    store: Annotated[
        str | None, typer.Option("--store", help="Store URL (default: a temporary SQLite file).")
    ] = None,
    broker: Annotated[
        str | None, typer.Option("--broker", help="Broker URL (default: memory://).")
    ] = None,
    no_local_executor: Annotated[
        bool,
        typer.Option(
            "--no-local-executor", help="Leave the steps to `magic-flow executor` processes."
        ),
    ] = False,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="Steps the local executor runs at once.")
    ] = None,
    log_format: LogFormatOption = None,
) -> None:
    """Run one execution of a workflow and print its result."""
    as_json = output is OutputFormat.JSON
    try:
        plan, children = _load_definitions(file, workflows or [])
        data = _read_input(input_text)
        problems = validate_input(plan, data)
        if problems:
            raise _Usage(f"invalid input: {problems[0]}" + _more(problems))
        settings = load_settings(
            {
                "store": store,
                "broker": broker,
                "handlers": handlers,
                "concurrency": concurrency,
                "log_format": log_format,
            }
        )
        level = logging.DEBUG if CliSettings.debug else logging.WARNING
        configure_logging(level, settings.log_format)
        if no_local_executor and settings.broker.startswith("memory:"):
            raise _Usage("--no-local-executor needs a shared --broker (redis://, amqp://, ...)")
        if not no_local_executor and not settings.handlers:
            needed = _functions([plan, *children])
            if needed:  # nobody would run them: the execution would wait forever
                shown = ", ".join(needed[:5]) + (", ..." if len(needed) > 5 else "")
                raise _Usage(
                    f"--handlers is required: a module or .py file with the functions {shown} "
                    "(or --no-local-executor with a shared --broker)"
                )
        registry = None
        if not no_local_executor and settings.handlers:
            from magicflow.executor import load_handlers

            registry = load_handlers(settings.handlers)
    except _Usage as problem:
        _refuse(problem, as_json)
    except MagicFlowError as exc:
        _refuse(_Usage(str(exc)), as_json)

    from magicflow.cli.progress import Progress

    progress = Progress(plan, enabled=not as_json)
    try:
        with (
            tracing(settings.tracing, "magicflow-run") as provider,
            _store_url(settings.store) as url,
        ):
            result = asyncio.run(
                _execute(plan, children, data, url, settings, registry, progress, provider)
            )
    except MagicFlowError as exc:  # tracing asked for but not possible
        _refuse(_Usage(str(exc)), as_json)
    if isinstance(result, MagicFlowError):  # nothing started: a bad URL, a conflicting version
        _refuse(_Usage(str(result)), as_json)
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
    else:
        progress.summary(result)
    raise typer.Exit(0 if result["status"] == "completed" else 1)


def _more(problems: list[str]) -> str:
    return f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""


def _refuse(problem: _Usage, as_json: bool) -> NoReturn:
    if as_json:
        error = {"type": "UsageError", "message": str(problem), "step_id": None}
        if problem.diagnostics:
            error["type"] = "WorkflowValidationError"
        document = {
            "execution_id": None,
            "status": None,
            "error": error,
            "diagnostics": [d.to_dict() for d in problem.diagnostics],
        }
        typer.echo(json.dumps(document, ensure_ascii=False))
    else:
        for diagnostic in problem.diagnostics:
            typer.echo(diagnostic.format(), err=True)
        if not problem.diagnostics:
            typer.echo(f"magic-flow: error: {problem}", err=True)
    raise typer.Exit(2)


def _load_definitions(
    file: str, workflow_dirs: list[str]
) -> tuple[WorkflowPlan, list[WorkflowPlan]]:
    """The plan of FILE and the sub-workflows it may start (found beside it or in --workflows)."""
    result = load_workflow(file)
    if result.plan is None:
        raise _Usage(f"{file} is not a valid workflow", result.diagnostics)
    plan = result.plan
    if not plan.workflow_refs:
        return plan, []
    library, _ = load_library([os.path.dirname(os.path.abspath(file)) or ".", *workflow_dirs])
    library.add(result)
    problems = [d for d in library.check(require_known=True) if d.file == result.file]
    if problems:
        raise _Usage(f"{file}: unresolved sub-workflow", problems)
    return plan, list(library.closure(plan).values())


def _functions(plans: list[WorkflowPlan]) -> list[str]:
    """The business functions the plans may call (steps, fallbacks, compensations), sorted."""
    names: set[str] = set()
    for plan in plans:
        for step in plan.steps:
            if step.function is not None:
                names.add(step.function)
            names.update(o.function for o in step.fallback if o.function is not None)
            if step.compensation is not None:
                names.add(step.compensation.function)
    return sorted(names)


def _read_input(text: str | None) -> Any:
    if text is None:
        return {}
    source = "--input"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise _Usage(f"cannot read input file {source}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Usage(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


@contextmanager
def _store_url(store: str | None) -> Iterator[str]:
    """``store``, or a temporary SQLite file that is removed afterwards."""
    if store is not None:
        yield store
        return
    directory = tempfile.mkdtemp(prefix="magicflow-run-")
    try:
        yield f"sqlite:///{Path(directory) / 'run.db'}"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def _execute(
    plan: WorkflowPlan,
    children: list[WorkflowPlan],
    data: Any,
    store: str,
    settings: Settings,
    registry: Registry | None,
    progress: Progress,
    tracer_provider: TracerProvider | None,
) -> dict[str, Any] | MagicFlowError:
    """The result document; or the error that kept the execution from starting (returned,
    not raised: raised in the body of ``async with Engine`` it would come out wrapped in an
    ExceptionGroup, and it must become one line or one JSON document, exit 2)."""
    from magicflow.service.engine import Engine

    async with AsyncExitStack() as stack:
        try:
            engine = await stack.enter_async_context(
                Engine(
                    store=store,
                    broker=settings.broker,
                    registry=registry,
                    concurrency=settings.concurrency,
                    tracer_provider=tracer_provider,
                    partitions=settings.partitions,
                    lease_ttl=settings.lease_ttl,
                )
            )
            for child in children:
                await engine.register(child)
            await engine.register(plan)
            execution_id = await engine.start(plan.name, data, version=plan.version)
        except MagicFlowError as exc:
            return exc
        async with progress.watching(engine, execution_id):
            return await engine.wait(execution_id)

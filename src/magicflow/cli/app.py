"""The Typer application and the one place that turns errors into a readable line.

Command modules import their heavy dependencies (server, drivers) inside the command, so
that ``magic-flow validate`` starts fast.
"""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer

from magicflow.errors import MagicFlowError

app = typer.Typer(
    name="magic-flow",
    help="Magic Flow: YAML workflows, durable orchestration, executors over a message broker.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


LogFormatOption = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        help="Logs on stderr: text (default) or json (one object per line).",
        show_default=False,
    ),
]


class Settings:
    """Options shared by every command (set by the root callback)."""

    debug: bool = False


@app.callback()
def root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks and debug logs.")
    ] = False,
) -> None:
    Settings.debug = debug


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one readable line on stderr and exit."""
    typer.echo(f"magic-flow: error: {message}", err=True)
    raise typer.Exit(code)


def main() -> None:
    """Entry point of the ``magic-flow`` command."""
    if "--debug" in sys.argv[1:]:
        Settings.debug = True
    try:
        app(standalone_mode=True)
    except MagicFlowError as exc:
        if Settings.debug:
            raise
        typer.echo(f"magic-flow: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if Settings.debug:
            raise
        typer.echo(
            f"magic-flow: error: {type(exc).__name__}: {exc} (run with --debug for details)",
            err=True,
        )
        sys.exit(1)

"""``magic-flow graph FILE``: draw the workflow's DAG as Mermaid, Graphviz DOT or SVG."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from magicflow.cli.app import app
from magicflow.dsl import load_workflow
from magicflow.dsl.graph import render_graph


class GraphFormat(StrEnum):
    MERMAID = "mermaid"
    DOT = "dot"
    SVG = "svg"


@app.command("graph")
def graph(
    file: Annotated[str, typer.Argument(metavar="FILE", help="The workflow YAML file.")],
    fmt: Annotated[
        GraphFormat, typer.Option("--format", help="mermaid (default), dot, or svg.")
    ] = GraphFormat.MERMAID,
) -> None:
    """Draw the workflow's steps (kinds, conditions, fan-out) and their dependencies."""
    result = load_workflow(file)
    if result.plan is None:
        for diagnostic in result.diagnostics:
            typer.echo(diagnostic.format(), err=True)
        raise typer.Exit(2)
    typer.echo(render_graph(result.plan, fmt.value), nl=False)

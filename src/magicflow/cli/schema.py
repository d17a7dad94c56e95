"""``magic-flow schema``: the JSON Schema of the workflow language, for editors and tools."""

from __future__ import annotations

import json

import typer

from magicflow.cli.app import app
from magicflow.dsl.schema import json_schema


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema (draft 2020-12) of workflow files.

    Save it and point your editor at it, e.g. VS Code's YAML extension:
    "yaml.schemas": {"./workflow.schema.json": ["workflows/*.yaml"]}.
    """
    typer.echo(json.dumps(json_schema(), indent=2, ensure_ascii=False))

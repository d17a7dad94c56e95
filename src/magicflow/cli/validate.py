"""``magic-flow validate FILE...``: every problem of every file, compiler style or JSON."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated

import typer

from magicflow.cli.app import app
from magicflow.dsl import Limits, ValidationResult, WorkflowLibrary, load_workflow, parse_workflow


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"


@app.command("validate")
def validate(
    files: Annotated[
        list[str],
        typer.Argument(metavar="FILE...", help="Workflow YAML files to check ('-': stdin)."),
    ],
    fmt: Annotated[
        Format, typer.Option("--format", help="text (FILE:LINE:COL: error: ...) or json.")
    ] = Format.TEXT,
) -> None:
    """Check workflow files: every problem at once; exit 0 when all are valid, 2 otherwise.

    Sub-workflow references are resolved among the files given: a cycle across them is an
    error; a child that is not among them is not.
    """
    results = _validate_all(files)
    valid = all(result.valid for result in results)
    if fmt is Format.JSON:
        typer.echo(json.dumps(_as_json(results, valid), indent=2, ensure_ascii=False))
    else:
        _print_text(results)
    raise typer.Exit(0 if valid else 2)


def _validate_all(files: list[str]) -> list[ValidationResult]:
    results = [_read(name) for name in dict.fromkeys(files)]
    library = WorkflowLibrary()
    by_file = {result.file: result for result in results}
    for result in results:
        result.diagnostics.extend(library.add(result))
    for diagnostic in library.check():
        by_file[diagnostic.file].diagnostics.append(diagnostic)
    for result in results:
        result.diagnostics.sort()
    return results


def _read(name: str) -> ValidationResult:
    if name == "-":
        return parse_workflow(sys.stdin.buffer.read(Limits().max_bytes + 1), "<stdin>")
    return load_workflow(name)


def _print_text(results: list[ValidationResult]) -> None:
    errors = 0
    for result in results:
        if result.valid:
            typer.echo(f"{result.file}: ok")
        for diagnostic in result.diagnostics:
            typer.echo(diagnostic.format())
            errors += 1
    invalid = sum(1 for result in results if not result.valid)
    if invalid:
        noun = "error" if errors == 1 else "errors"
        files = "file" if invalid == 1 else "files"
        typer.echo(f"{errors} {noun} in {invalid} {files}", err=True)


def _as_json(results: list[ValidationResult], valid: bool) -> dict[str, object]:
    return {
        "valid": valid,
        "files": [
            {
                "file": result.file,
                "valid": result.valid,
                "diagnostics": [d.to_dict() for d in result.diagnostics],
            }
            for result in results
        ],
    }

"""The ``magic-flow`` command. Each command lives in a module of its own."""

from magicflow.cli import db as _db  # noqa: F401  (registers `magic-flow db upgrade`)
from magicflow.cli import graph as _graph  # noqa: F401  (registers `magic-flow graph`)
from magicflow.cli import keys as _keys  # noqa: F401  (registers `magic-flow keys` and `server`)
from magicflow.cli import run as _run  # noqa: F401  (registers `magic-flow run`)
from magicflow.cli import schema as _schema  # noqa: F401  (registers `magic-flow schema`)
from magicflow.cli import validate as _validate  # noqa: F401  (registers `magic-flow validate`)
from magicflow.cli.app import app, main

__all__ = ["app", "main"]

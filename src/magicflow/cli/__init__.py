"""The ``magic-flow`` command. Each command lives in a module of its own."""

from magicflow.cli.app import app, main

__all__ = ["app", "main"]

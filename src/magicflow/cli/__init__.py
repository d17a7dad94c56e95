"""The ``magic-flow`` command. Each command lives in a module of its own.

``main`` imports only the module of the command being run (every module for ``--help`` or a
mistyped name), so that each command pays for its own imports only: ``validate`` must start
fast, and ``server`` or ``executor`` bring asyncio, the HTTP stack and the drivers.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from magicflow.cli.app import app
from magicflow.cli.app import main as _main

# command name -> the module that registers it
COMMANDS = {
    "validate": "validate",
    "schema": "schema",
    "graph": "graph",
    "run": "run",
    "executor": "executor",
    "server": "keys",  # keys.py imports server.py
    "keys": "keys",
    "db": "db",
}

__all__ = ["COMMANDS", "app", "load_commands", "main"]


def load_commands(argv: Sequence[str]) -> None:
    """Register the command named in ``argv``, or all of them when none is recognised."""
    name = next((arg for arg in argv if not arg.startswith("-")), None)
    modules = [COMMANDS[name]] if name in COMMANDS else sorted(set(COMMANDS.values()))
    for module in modules:
        importlib.import_module(f"magicflow.cli.{module}")


def main() -> None:
    """Entry point of the ``magic-flow`` command."""
    load_commands(sys.argv[1:])
    _main()

"""Executor side: the registry of business functions, their context, the runner and the worker.

Imports only ``magicflow.messages``, ``magicflow.errors`` and ``magicflow.brokers.base``:
executors deploy without the orchestrator.

The registry and ``StepContext`` load eagerly (a handlers module needs only them, and
``import magicflow`` stays fast); ``Executor``, ``Runner`` and ``DaemonThreadPool`` need
asyncio, so they load on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from magicflow.executor.context import StepContext
from magicflow.executor.registry import (
    Handler,
    Registry,
    StepFunction,
    default_registry,
    function,
    load_handlers,
)

if TYPE_CHECKING:
    from magicflow.executor.runner import Runner
    from magicflow.executor.threads import DaemonThreadPool
    from magicflow.executor.worker import Executor

_LAZY = {
    "DaemonThreadPool": "magicflow.executor.threads",
    "Executor": "magicflow.executor.worker",
    "Runner": "magicflow.executor.runner",
}

__all__ = [
    "DaemonThreadPool",
    "Executor",
    "Handler",
    "Registry",
    "Runner",
    "StepContext",
    "StepFunction",
    "default_registry",
    "function",
    "load_handlers",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

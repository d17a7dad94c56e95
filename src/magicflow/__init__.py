"""Magic Flow: YAML workflows, durable orchestration, executors over a message broker."""

import importlib
from typing import TYPE_CHECKING, Any

from magicflow.errors import (
    MagicFlowError,
    NonRetryableError,
    StepError,
    WorkflowValidationError,
)

__version__ = "0.1.0"

# Imported on first use, so that `import magicflow` (and `magic-flow validate`) stays fast:
# the executor pulls in msgspec and logging, the engine asyncio and the backends.
_LAZY = {
    "Client": "magicflow.client",
    "SyncClient": "magicflow.client",
    "Engine": "magicflow.service.engine",
    "Executor": "magicflow.executor",
    "Registry": "magicflow.executor",
    "StepContext": "magicflow.executor",
    "default_registry": "magicflow.executor",
    "function": "magicflow.executor",
    "load_handlers": "magicflow.executor",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'magicflow' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from magicflow.client import Client, SyncClient
    from magicflow.executor import (
        Executor,
        Registry,
        StepContext,
        default_registry,
        function,
        load_handlers,
    )
    from magicflow.service.engine import Engine

__all__ = [
    "Client",
    "Engine",
    "Executor",
    "MagicFlowError",
    "NonRetryableError",
    "Registry",
    "StepContext",
    "StepError",
    "SyncClient",
    "WorkflowValidationError",
    "__version__",
    "default_registry",
    "function",
    "load_handlers",
]

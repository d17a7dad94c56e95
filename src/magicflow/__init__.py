"""Magic Flow: YAML workflows, durable orchestration, executors over a message broker."""

from magicflow.errors import (
    MagicFlowError,
    NonRetryableError,
    StepError,
    WorkflowValidationError,
)
from magicflow.executor import (
    Registry,
    StepContext,
    default_registry,
    function,
    load_handlers,
)

__version__ = "0.1.0"

__all__ = [
    "MagicFlowError",
    "NonRetryableError",
    "Registry",
    "StepContext",
    "StepError",
    "WorkflowValidationError",
    "__version__",
    "default_registry",
    "function",
    "load_handlers",
]

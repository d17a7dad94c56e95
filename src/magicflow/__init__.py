"""Magic Flow: YAML workflows, durable orchestration, executors over a message broker."""

from magicflow.errors import (
    MagicFlowError,
    NonRetryableError,
    StepError,
    WorkflowValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "MagicFlowError",
    "NonRetryableError",
    "StepError",
    "WorkflowValidationError",
    "__version__",
]

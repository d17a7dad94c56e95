"""The one error tree of Magic Flow.

    MagicFlowError
    ├── WorkflowValidationError      a definition or an execution input is invalid (diagnostics)
    ├── ConfigurationError           a bad URL, flag, setting or missing optional extra
    ├── NotFoundError                an unknown workflow, version or execution
    ├── ConflictError                same name and version with other content; a stale state version
    ├── StoreError                   a store backend failed (driver errors translated into this)
    ├── BrokerError                  a broker backend failed (driver errors translated into this)
    ├── AuthError                    the service refused the API key (401) or its role (403)
    └── StepError                    raised by business functions to fail an attempt
        └── NonRetryableError        fails the step at once, skipping the remaining retries

    BaseException
    └── EngineSignal                 control flow of the runtime; user code's `except Exception`
        └── StepCancelled            cannot swallow it

Retry facts live on the error itself (``StepError.non_retryable``), as Temporal's
``ApplicationError`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from magicflow.dsl.diagnostics import Diagnostic


class MagicFlowError(Exception):
    """Base of every error Magic Flow raises on purpose."""


class WorkflowValidationError(MagicFlowError):
    """A workflow definition or execution input is invalid; ``diagnostics`` says where and why."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        first = self.diagnostics[0].format() if self.diagnostics else "invalid workflow"
        more = len(self.diagnostics) - 1
        super().__init__(first + (f" (and {more} more)" if more > 0 else ""))


class ConfigurationError(MagicFlowError):
    """A bad URL, flag or setting, or an optional extra that is not installed."""


class NotFoundError(MagicFlowError):
    """An unknown workflow, version or execution."""


class ConflictError(MagicFlowError):
    """A write that contradicts what is stored (other content, stale version)."""


class StoreError(MagicFlowError):
    """A store backend failed."""


class BrokerError(MagicFlowError):
    """A broker backend failed."""


class AuthError(MagicFlowError):
    """The workflow service refused the call: no valid API key (401), or a role that may not
    do it (403). ``status_code`` says which."""

    def __init__(self, message: str, status_code: int = 401) -> None:
        super().__init__(message)
        self.status_code = status_code


class StepError(MagicFlowError):
    """Raised by a business function to fail the current attempt (the retry policy applies)."""

    non_retryable: bool = False


class NonRetryableError(StepError):
    """Fails the step at once: the remaining retries are skipped (a fallback still applies)."""

    non_retryable = True


class EngineSignal(BaseException):
    """Runtime control flow. Derives from BaseException so ``except Exception`` can't swallow it."""


class StepCancelled(EngineSignal):
    """The running step was cancelled (execution cancelled, deadline passed, step timed out)."""

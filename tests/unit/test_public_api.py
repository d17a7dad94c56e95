"""The public surface of ``magicflow`` is curated: this pins it."""

from __future__ import annotations

import subprocess
import sys

import magicflow
import magicflow.executor


def test_public_names_are_pinned() -> None:
    assert sorted(magicflow.__all__) == [
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
    for name in magicflow.__all__:
        assert hasattr(magicflow, name), name


def test_executor_names_are_pinned() -> None:
    assert sorted(magicflow.executor.__all__) == [
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
    for name in magicflow.executor.__all__:
        assert getattr(magicflow.executor, name) is not None, name


def test_import_magicflow_does_not_load_asyncio() -> None:
    """A handlers module and the CLI import ``magicflow``; asyncio costs ~100 ms to import."""
    code = "import sys, magicflow; print('asyncio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

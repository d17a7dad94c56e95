"""Fixtures for the executor tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from magicflow.executor import Registry, default_registry


@pytest.fixture
def clean_default_registry() -> Iterator[Registry]:
    """The default registry, emptied for the test and restored afterwards."""
    registry = default_registry()
    saved = registry.copy()
    registry.clear()
    try:
        yield registry
    finally:
        registry.clear()
        registry.update(saved)

"""The workflow service: the composition root that wires store, broker, driver and executors.

``Engine`` is the in-process Python API (exported as ``magicflow.Engine``).
"""

from magicflow.service.engine import Engine

__all__ = ["Engine"]

"""Execution partitions: the unit of ownership when several service instances share a store.

An execution belongs to one of ``count`` partitions, by a hash of its *root* id (a child
execution's id starts with its parent's, so a whole tree of executions lives in one
partition and is decided by one instance). Each partition has its own results queue, so an
executor's result reaches the instance that owns the execution without any forwarding.
"""

from __future__ import annotations

import zlib

from magicflow.brokers.base import RESULTS_QUEUE

DEFAULT_PARTITIONS = 16


def partition_of(execution_id: str, count: int) -> int:
    root = execution_id.split(".", 1)[0]
    return zlib.crc32(root.encode()) % count


def results_queue(partition: int) -> str:
    return f"{RESULTS_QUEUE}.{partition}"

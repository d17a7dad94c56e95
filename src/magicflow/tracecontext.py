"""Trace ids of an execution, derived from its id: W3C ``traceparent`` headers without state.

Any process that knows an execution id (a service instance, an executor, after any restart)
can attach spans to that execution's trace without storing or asking for anything:

- the **trace id** is a hash of the id of the top-level execution (a sub-workflow's id starts
  with its parent's id and a dot, so a whole tree of executions shares one trace);
- the **span id of the execution's span** is a hash of the execution's own id.

The engine puts ``traceparent(execution_id)`` in every task message's ``context``; the
executor's span for the attempt is a child of it; the service emits the execution's span with
exactly that span id when the execution ends. Standard library only (the engine and the
executor import it).
"""

from __future__ import annotations

import functools
import hashlib

TRACEPARENT = "traceparent"


def root_execution_id(execution_id: str) -> str:
    """The top-level execution of ``execution_id`` (itself unless it is a sub-workflow's)."""
    return execution_id.partition(".")[0] or execution_id


def trace_id(execution_id: str) -> int:
    """The 128-bit trace id of the execution's trace (never 0, which W3C calls invalid)."""
    data = root_execution_id(execution_id).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=16, person=b"mf-trace").digest()) or 1


def span_id(execution_id: str) -> int:
    """The 64-bit span id of the execution's own span (never 0)."""
    data = execution_id.encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=b"mf-span").digest()) or 1


@functools.lru_cache(maxsize=4096)  # an execution's tasks are made close together
def traceparent(execution_id: str) -> str:
    """The W3C ``traceparent`` whose parent is the execution's span (sampled)."""
    return f"00-{trace_id(execution_id):032x}-{span_id(execution_id):016x}-01"

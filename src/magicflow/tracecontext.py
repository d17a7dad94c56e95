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


def _digest(execution_id: str) -> str:
    """48 hex digits: the first 32 name a trace, the last 16 a span."""
    return hashlib.blake2b(execution_id.encode(), digest_size=24, person=b"magicflow").hexdigest()


def _nonzero(hex_id: str) -> str:
    """W3C calls an all-zero id invalid (a 1 in 2**64 chance at worst: made 1 instead)."""
    return hex_id if hex_id.strip("0") else hex_id[:-1] + "1"


def _ids(execution_id: str) -> tuple[str, str]:
    """(trace id, execution span id) in hex; one hash for a top-level execution."""
    own = _digest(execution_id)
    root = root_execution_id(execution_id)
    trace = own if root == execution_id else _digest(root)
    return _nonzero(trace[:32]), _nonzero(own[32:])


def trace_id(execution_id: str) -> int:
    """The 128-bit trace id of the execution's trace."""
    return int(_ids(execution_id)[0], 16)


def span_id(execution_id: str) -> int:
    """The 64-bit span id of the execution's own span."""
    return int(_ids(execution_id)[1], 16)


@functools.lru_cache(maxsize=4096)  # an execution's tasks are made close together
def traceparent(execution_id: str) -> str:
    """The W3C ``traceparent`` whose parent is the execution's span (sampled)."""
    trace, span = _ids(execution_id)
    return f"00-{trace}-{span}-01"


def parse_traceparent(header: str) -> tuple[int, int] | None:
    """(trace id, parent span id) of a W3C ``traceparent``; None if it is not one."""
    parts = header.split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or parts[0] == "ff":
        return None
    try:
        trace, span = int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None
    return (trace, span) if trace and span else None

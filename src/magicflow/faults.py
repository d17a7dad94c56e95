"""Crash points: where the fault-injection tests kill the service, on purpose.

``crash_point(name)`` does nothing unless the process was started with
``MAGICFLOW_CRASH_AT=NAME:N`` (for example ``after_commit:37``): then the N-th time the code
passes the point called NAME, the process sends itself SIGKILL, as a power cut or the OOM
killer would (no ``finally``, no flush, no goodbye to the store or the broker). The variable
is read once, at import; when it is not set a call costs one comparison.

The points, in the order a batch meets them (``engine/driver.py``):

- ``result_received``: result messages came from the broker, nothing of them is applied yet;
- ``before_commit``: a batch of transitions is decided and about to be committed;
- ``after_commit``: the batch is committed, none of its task messages is published yet;
- ``after_publish``: its task messages are published, their outbox rows not yet deleted and
  the results it applied not yet acknowledged.

Never set the variable in production: it exists so that ``tests/faults/`` can prove that a
crash at each point loses nothing and applies nothing twice.
"""

from __future__ import annotations

import os
import signal

from magicflow.errors import ConfigurationError

POINTS = frozenset({"result_received", "before_commit", "after_commit", "after_publish"})


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, count = spec.partition(":")
    if name not in POINTS or not count.isdigit() or int(count) < 1:
        raise ConfigurationError(
            f"MAGICFLOW_CRASH_AT must be POINT:N with POINT one of {', '.join(sorted(POINTS))} "
            f"and N >= 1, not {spec!r}"
        )
    return name, int(count)


_target = _parse(os.environ.get("MAGICFLOW_CRASH_AT"))
_hits = 0


def crash_point(name: str) -> None:
    """Kill this process here if this is the N-th pass through ``name`` (see the module)."""
    global _hits
    if _target is None or _target[0] != name:
        return
    _hits += 1
    if _hits >= _target[1]:
        os.kill(os.getpid(), signal.SIGKILL)

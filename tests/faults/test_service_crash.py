"""SIGKILL the service at each crash point, restart it: every execution finishes, once.

One ``magic-flow server`` (no handlers) and two ``magic-flow executor`` processes run
``orders`` executions started through the HTTP API. The service is started with
``MAGICFLOW_CRASH_AT=POINT:N`` (``magicflow/faults.py``), so it kills itself with SIGKILL the
N-th time it passes POINT; the test then starts it again with the next point, and after the
last one without any. The four points are the moments that matter for exactly-once:

- ``before_commit``: decided, not committed: the events must be decided again (results come
  again: they were not acknowledged);
- ``after_commit``: committed, tasks not published: the outbox must publish them on restart;
- ``after_publish``: published, outbox rows not deleted, results not acknowledged: tasks go
  out twice, results come twice; neither may be applied twice;
- ``result_received``: results taken from the broker and not applied: they come again.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from .checker import Report, check
from .conftest import MakeCluster, Pair
from .harness import Cluster, Process
from .workflows import completes, order_attempts, order_inputs, orders

pytestmark = [pytest.mark.slow, pytest.mark.services]

# (point, N): N small enough to be reached while work is left, large enough for some to be
# under way
CRASHES = [
    ("before_commit", 12),
    ("after_commit", 12),
    ("after_publish", 8),
    ("result_received", 6),
]
COUNT = 150


async def _crashed(cluster: Cluster, service: Process, point: str, within: float = 90) -> None:
    """Wait until the service killed itself at ``point``."""
    deadline = time.monotonic() + within
    while service.alive():
        if time.monotonic() > deadline:
            raise AssertionError(f"the service never reached {point}:\n{cluster.logs()}")
        await asyncio.sleep(0.02)
    cluster.fault(point)
    assert service.popen is not None
    assert service.popen.returncode == -signal.SIGKILL, service.tail()


@pytest.mark.timeout(300)
async def test_sigkill_at_each_crash_point(pair: Pair, make_cluster: MakeCluster) -> None:
    began = time.time()
    cluster = make_cluster()
    service = cluster.add_service()
    for _ in range(2):
        cluster.add_executor().start()
    inputs = order_inputs(COUNT)
    starting: asyncio.Task[dict[str, str]] | None = None
    for point, nth in CRASHES:
        await cluster.start_service(service, crash_at=f"{point}:{nth}")
        if starting is None:  # the starts go on (and are retried) across the crashes
            await cluster.register(service, orders(cluster.queue))
            starting = asyncio.create_task(cluster.start_executions(service, "orders", inputs))
        await _crashed(cluster, service, point)
    await cluster.start_service(service)
    assert starting is not None
    started = await starting
    done = await cluster.wait_until_done(COUNT, within=120)
    cluster.shutdown()
    report = await check(
        cluster,
        Report("service crash points", str(pair)),
        started,
        inputs,
        completes,
        order_attempts,
        began,
    )
    report.publish()
    report.assert_ok(min_completed=COUNT)
    assert done is not None, cluster.logs()

"""1,000 durable timers across a full restart of the service: each fires exactly once.

``nap`` sleeps (a timer per execution), then ``wake`` runs; one ``wake`` in four fails its
first attempt and is retried after a backoff (a second timer). Once every execution is
started, the service is SIGKILLed and started again while most timers are pending. Each
``nap`` must complete once and each ``wake`` run the attempts its policy gives, each attempt
dispatched once (a timer that fired twice would decide the same attempt twice).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from .checker import Ledger, Report, check
from .conftest import MakeCluster, Pair, one_per
from .workflows import completes

pytestmark = [pytest.mark.slow, pytest.mark.services]

COUNT = 1000
NAP = """\
name: naps
version: "1"
defaults:
  queue: {queue}
steps:
  - id: nap
    sleep: 8s
  - id: wake
    function: flaky
    depends_on: [nap]
    input: {{ms: 1, fail: "${{input.fail}}"}}
    retry_config: {{strategy: fixed, max_attempts: 2, initial_interval: 2s, jitter: false}}
"""


def _attempts(value: Any, step_id: str, _step: Any) -> int | None:
    return 2 if step_id == "wake" and value["fail"] else 1


@pytest.mark.timeout(240)
@pytest.mark.parametrize("pair", one_per("store"), ids=str)
async def test_a_thousand_timers_fire_once_across_a_restart(
    pair: Pair, make_cluster: MakeCluster
) -> None:
    began = time.time()
    cluster = make_cluster()
    service = cluster.add_service()
    for _ in range(2):
        cluster.add_executor().start()
    await cluster.start_service(service)
    await cluster.register(service, NAP.format(queue=cluster.queue))
    inputs = {f"nap-{n}": {"n": n, "fail": n % 4 == 0} for n in range(COUNT)}
    started = await cluster.start_executions(service, "naps", inputs, parallel=50)
    service.kill()
    cluster.fault("service SIGKILL with timers pending")
    pending = 0 if not cluster.ledger.exists() else len(Ledger.read(cluster.ledger).calls)
    await cluster.start_service(service)
    done = await cluster.wait_until_done(COUNT, within=150)
    cluster.shutdown()
    report = await check(
        cluster, Report("1,000 timers", str(pair)), started, inputs, completes, _attempts, began
    )
    report.extra["fired_before_kill"] = pending
    report.publish()
    assert pending < COUNT // 2, "most timers fired before the restart: it proved little"
    report.assert_ok(min_completed=COUNT)
    assert done is not None, cluster.logs()

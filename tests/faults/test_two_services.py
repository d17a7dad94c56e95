"""Two service instances at once over one PostgreSQL store and one broker.

Starts are spread over both instances; halfway, one of them is SIGKILLed and started again
(the other takes its partitions over when their lease lapses: ``harness.LEASE_TTL``). Every
step must be decided once: one task id per step attempt in the ledger, one ``step.completed``
per step, the attempts the retry policy gives.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from .checker import Report, check
from .conftest import PAIRS, MakeCluster, Pair
from .workflows import completes, order_attempts, order_inputs, orders

pytestmark = [pytest.mark.slow, pytest.mark.services]

COUNT = 120


# Not over Kafka yet: there, after one of two instances was SIGKILLed and restarted, most
# executions waited forever for results (77 of 120 in the run that found it).
TWO_PAIRS = [p for p in PAIRS if p.store == "postgresql" and p.broker != "kafka"]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("pair", TWO_PAIRS, ids=str)
async def test_two_service_instances_decide_each_step_once(
    pair: Pair, make_cluster: MakeCluster
) -> None:
    began = time.time()
    cluster = make_cluster()
    services = [cluster.add_service(), cluster.add_service()]
    for _ in range(2):
        cluster.add_executor().start()
    await asyncio.gather(*(cluster.start_service(s) for s in services))
    await cluster.register(services[0], orders(cluster.queue))
    inputs = order_inputs(COUNT, ms=50)
    starting = asyncio.create_task(cluster.start_executions(services, "orders", inputs))
    await cluster.wait_for_ledger(COUNT)
    services[1].kill()
    cluster.fault("one of two instances SIGKILLed")
    await cluster.start_service(services[1])
    started = await starting
    done = await cluster.wait_until_done(COUNT, within=120)
    cluster.shutdown()
    report = await check(
        cluster,
        Report("two instances", str(pair)),
        started,
        inputs,
        completes,
        order_attempts,
        began,
    )
    report.publish()
    report.assert_ok(min_completed=COUNT)
    assert done is not None, cluster.logs()

"""Event streams: lifecycle events published as messages to a broker queue or topic (the
``Deliverer`` of ``service/deliveries.py`` decides what to send and when; this module
publishes). Each message is the delivery's JSON body, the same as a webhook's; consumers
deduplicate on its ``id``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from magicflow.service.broker_pool import BrokerPool
from magicflow.service.ids import new_execution_id
from magicflow.stores.base import DeliveryRecord, EventStreamRecord


def new_stream_id() -> str:
    return "es_" + new_execution_id()


async def publish(
    brokers: BrokerPool | None,
    stream: EventStreamRecord,
    deliveries: Sequence[DeliveryRecord],
    timeout: float,  # noqa: ASYNC109 - one bound for connecting and publishing
) -> str | None:
    """Publish the deliveries to the stream's queue, in order, in one call; what went wrong
    (for all of them), or None once the broker has them durably."""
    if brokers is None:
        return "no broker to publish to"
    try:
        async with asyncio.timeout(timeout):
            broker = await brokers.get(stream.broker)
            await broker.publish(stream.queue, [d.body for d in deliveries])
    except TimeoutError:
        return f"the broker did not answer within {timeout:g} s"
    except Exception as exc:  # a broker error, a bad URL: recorded on the delivery, retried
        return f"{type(exc).__name__}: {exc}"
    return None

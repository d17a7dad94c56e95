"""Publishing results and settling deliveries, in batches, results first.

The worker hands over outcomes as steps finish; ``run`` (a task of the worker's TaskGroup)
publishes everything that finished in the same loop tick with one ``publish`` per results
queue (the task's ``reply_to``, or ``RESULTS_QUEUE``), and only then acks (or dead-letters)
the deliveries those results answer: a crash in between means a redelivery and a duplicate
result, never a lost one. Deliveries with no result (cancelled on request, given back at
shutdown, undecodable) are acked, nacked or dead-lettered in the same pass.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from magicflow.brokers.base import RESULTS_QUEUE, Broker, Delivery
from magicflow.messages import ResultMessage, encode

logger = logging.getLogger(__name__)

MAX_PUBLISH_BATCH: Final = 500
CLOSING_ATTEMPTS: Final = 3  # publish attempts while closing before leaving it to redelivery

# (result, deliveries it answers, dead-letter reason or None to ack them, results queue)
_Outcome = tuple[ResultMessage, list[Delivery], str | None, str]


class Settler:
    """Batches results and settlements; ``release`` is told which deliveries are done with."""

    def __init__(
        self, broker: Broker, release: Callable[[list[Delivery]], None], *, name: str = ""
    ) -> None:
        self.broker = broker
        self._release = release
        self._name = name
        self._outcomes: list[_Outcome] = []
        self._acks: list[Delivery] = []
        self._nacks: list[Delivery] = []
        self._dead: list[tuple[Delivery, str]] = []
        self._wake = asyncio.Event()
        self._closing = False

    # ------------------------------------------------------------------ handing over

    def result(
        self,
        result: ResultMessage,
        deliveries: list[Delivery],
        dead_letter: str | None = None,
        *,
        reply_to: str | None = None,
    ) -> None:
        """Publish ``result`` (to ``reply_to``, or ``RESULTS_QUEUE``), then ack its deliveries
        (or dead-letter them with the reason)."""
        self._outcomes.append((result, deliveries, dead_letter, reply_to or RESULTS_QUEUE))
        self._wake.set()

    def ack(self, deliveries: list[Delivery]) -> None:
        self._acks.extend(deliveries)
        self._wake.set()

    def nack(self, deliveries: list[Delivery]) -> None:
        self._nacks.extend(deliveries)
        self._wake.set()

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._dead.append((delivery, reason))
        self._wake.set()

    @property
    def pending(self) -> bool:
        return bool(self._outcomes or self._acks or self._nacks or self._dead)

    def close(self) -> None:
        """Make ``run`` return once everything handed over so far is sent."""
        self._closing = True
        self._wake.set()

    # ------------------------------------------------------------------ sending

    async def run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            if await self._flush():
                failures = 0
            else:
                failures += 1
                if self._closing and failures >= CLOSING_ATTEMPTS:
                    self._give_up()
                    return
                await asyncio.sleep(min(0.05 * 2**failures, 5.0))
                self._wake.set()
                continue
            if self._closing and not self.pending:
                return

    async def _flush(self) -> bool:
        """Publish one batch of results, then settle; False when publishing failed."""
        batch = self._outcomes[:MAX_PUBLISH_BATCH]
        del self._outcomes[:MAX_PUBLISH_BATCH]
        published = await self._publish(batch)
        ok = len(published) == len(batch)
        if not ok:  # publish the rest again later; settle what was published
            sent = {id(outcome) for outcome in published}
            self._outcomes[:0] = [o for o in batch if id(o) not in sent]
            batch = published
        acks, self._acks = self._acks, []
        dead, self._dead = self._dead, []
        nacks, self._nacks = self._nacks, []
        for _, deliveries, reason, _ in batch:
            if reason is None:
                acks.extend(deliveries)
            else:
                dead.extend((delivery, reason) for delivery in deliveries)
        for delivery, reason in dead:
            await self._settle(
                self.broker.dead_letter([delivery], reason), [delivery], "dead letter"
            )
        if acks:
            await self._settle(self.broker.ack(acks), acks, "ack")
        if nacks:
            await self._settle(self.broker.nack(nacks, requeue=True), nacks, "nack")
        if self._outcomes:
            self._wake.set()
        return ok

    async def _publish(self, batch: list[_Outcome]) -> list[_Outcome]:
        """One ``publish`` per results queue, all at once; the outcomes whose results were
        published."""
        by_queue: dict[str, list[_Outcome]] = {}
        for outcome in batch:
            by_queue.setdefault(outcome[3], []).append(outcome)
        groups = list(by_queue.items())
        sent = await asyncio.gather(
            *(self.broker.publish(queue, [encode(o[0]) for o in group]) for queue, group in groups),
            return_exceptions=True,
        )
        published: list[_Outcome] = []
        for (_, group), error in zip(groups, sent, strict=True):
            if isinstance(error, BaseException):
                logger.error("executor %s: publishing results failed", self._name, exc_info=error)
            else:
                published.extend(group)
        return published

    async def _settle(self, action: Awaitable[None], deliveries: list[Delivery], what: str) -> None:
        try:
            await action
        except Exception:  # the broker redelivers what we could not settle
            logger.exception("executor %s: %s of %d failed", self._name, what, len(deliveries))
        self._release(deliveries)

    def _give_up(self) -> None:
        """Closing while the broker keeps failing: leave the rest to redelivery."""
        left = [d for _, ds, _, _ in self._outcomes for d in ds] + self._acks + self._nacks
        left += [d for d, _ in self._dead]
        logger.error(
            "executor %s: %d deliveries left unsettled; the broker will deliver them again",
            self._name,
            len(left),
        )
        self._outcomes, self._acks, self._nacks, self._dead = [], [], [], []
        self._release(left)

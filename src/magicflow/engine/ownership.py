"""Which execution partitions this service instance decides, kept by renewing leases.

Several service instances over one store split the partitions between them (see
``engine.partitions`` and the ``Leases`` Protocol): every ``ttl / 3`` seconds an instance
renews its leases, which also rebalances (a new instance gets its share within seconds, a dead
one's partitions are taken once its leases expire). The lease is an efficiency device, not
the safety net: every transition is still committed against the execution's version, so an
instance that was paused past its lease and decides on stale state only gets a conflict.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from magicflow.engine.partitions import partition_of
from magicflow.stores.base import Leases

logger = logging.getLogger(__name__)

Changed = Callable[[set[int], set[int]], None]  # (gained, lost)


class Ownership:
    def __init__(
        self,
        leases: Leases,
        owner: str,
        *,
        partitions: int,
        ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases, self.owner = leases, owner
        self.partitions, self.ttl = partitions, ttl
        self._clock = clock
        self.held: dict[int, int] = {}  # partition -> epoch
        self._valid_until = 0.0  # on our clock: after it, we no longer trust what we hold
        self.on_change: Changed = lambda gained, lost: None

    def owns(self, execution_id: str) -> bool:
        return partition_of(execution_id, self.partitions) in self.held

    async def renew(self) -> None:
        """Renew once; tell ``on_change`` what was gained and lost (a partition taken over by
        another instance in between counts as lost and gained again: a new epoch)."""
        began = self._clock()
        try:
            held = await self.leases.renew_leases(self.owner, self.partitions, self.ttl)
        except Exception:
            if self.held and self._clock() > self._valid_until:
                logger.error("could not renew the partition leases in time; letting them go")
                self._change({})
            raise
        self._valid_until = began + self.ttl
        self._change(held)

    async def run(self) -> None:
        """Renew every ``ttl / 3`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self.renew()
            except Exception:
                logger.warning("renewing the partition leases failed; retrying", exc_info=True)

    async def release(self) -> None:
        self._change({})
        await self.leases.release_leases(self.owner)

    def _change(self, held: dict[int, int]) -> None:
        old = self.held
        lost = {p for p, epoch in old.items() if held.get(p) != epoch}
        gained = {p for p, epoch in held.items() if old.get(p) != epoch}
        self.held = held
        if gained or lost:
            logger.info(
                "partitions: holding %d of %d (gained %s, lost %s)",
                len(held),
                self.partitions,
                sorted(gained) or "none",
                sorted(lost) or "none",
            )
            self.on_change(gained, lost)

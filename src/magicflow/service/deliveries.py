"""Deliveries of execution lifecycle events to their subscriptions: webhooks (an HTTP POST,
``service/webhooks.py``) and event streams (a message on a broker queue,
``service/event_streams.py``).

``Deliverer.deliveries_for`` is the driver's delivery source: while a transition is decided,
it makes one delivery per event it emitted and matching subscription, and the store commits
them with the transition (an outbox: a crash loses none, a restart sends what is pending).
``notify``, a driver listener, wakes the sender after the commit. The sender claims the
deliveries that are due, attempts them and records each attempt (status, response code or
error, next attempt). A failed attempt is retried with exponential backoff (``backoff`` ·
2^(attempt-1), at most ``max_backoff``) until ``max_attempts``; then the delivery is
``failed``. Deliveries are at least once: receivers deduplicate on the delivery id, which
stays the same across attempts.

Taking due deliveries is a claim (``Store.claim_due_deliveries``): each is leased to this
instance for ``lease`` seconds, so several service instances on one store never attempt one
delivery at once; if this instance dies mid-attempt, another takes it when the lease ends.

The body of every delivery: the JSON ``{id, event, execution_id, workflow, version, step_id,
data, timestamp}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType

import httpx

from magicflow.engine.model import Emit
from magicflow.service import event_streams, webhooks
from magicflow.service.broker_pool import BrokerPool
from magicflow.service.ids import new_execution_id
from magicflow.service.state import timestamp
from magicflow.stores.base import (
    DeliveryRecord,
    EventStreamRecord,
    Store,
    Transition,
    WebhookRecord,
)

logger = logging.getLogger(__name__)

_BATCH = 100  # at once: httpx keeps 100 connections, each attempt well within the lease
Subscription = WebhookRecord | EventStreamRecord


def matches(subscription: Subscription, workflow: str, kind: str) -> bool:
    return subscription.workflow in (None, workflow) and (
        "*" in subscription.events or kind in subscription.events
    )


class Deliverer:
    """Delivers events while entered (``async with``); ``notify`` is the driver listener.
    ``brokers``: where event streams publish (without it, their deliveries fail)."""

    def __init__(
        self,
        store: Store,
        brokers: BrokerPool | None = None,
        *,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 8,
        backoff: float = 1.0,
        max_backoff: float = 3600.0,
        timeout: float = 10.0,
        poll: float = 1.0,
        lease: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store = store
        self.brokers = brokers
        self.clock = clock
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.poll = poll
        self.lease = lease  # longer than an attempt can take (``timeout``)
        self._transport = transport
        self._subscriptions: dict[str, Subscription] = {}
        self._wake = asyncio.Event()
        self._client: httpx.AsyncClient | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None  # the sender

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Deliverer:
        await self.refresh()
        self._client = httpx.AsyncClient(
            transport=self._transport, timeout=self.timeout, follow_redirects=False
        )
        self._stopping.clear()
        self._task = asyncio.create_task(self._send_loop(), name="magicflow-deliveries")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """The attempts under way finish and are recorded (``timeout`` bounds them)."""
        self._stopping.set()
        self._wake.set()
        task, self._task = self._task, None
        try:
            if task is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(task, self.timeout + 5.0)  # cancels it at the end
        finally:
            client, self._client = self._client, None
            if client is not None:
                await client.aclose()

    # ------------------------------------------------------------------ subscriptions

    async def refresh(self) -> None:
        """Read the subscriptions again (the API calls it after each change)."""
        found: list[Subscription] = [*await self.store.list_webhooks()]
        found += await self.store.list_event_streams()
        self._subscriptions = {s.id: s for s in found}

    def notify(self, execution_id: str, emits: list[Emit]) -> None:
        """Driver listener: a transition that emitted events committed (with its
        deliveries, if any): send them now rather than at the next poll."""
        if self._subscriptions:
            self._wake.set()

    # ------------------------------------------------------------------ making deliveries

    def deliveries_for(self, transition: Transition, emits: list[Emit]) -> list[DeliveryRecord]:
        """The driver's delivery source: the deliveries of what ``transition`` emitted,
        committed with it."""
        if not self._subscriptions:
            return []
        try:
            workflow = (transition.workflow, transition.workflow_version)
            return self._deliveries(transition.execution_id, workflow, emits, transition.updated_at)
        except Exception:  # never in the way of the commit: the events stay in the event log
            logger.exception("deliveries: cannot make the deliveries of a transition")
            return []

    def _deliveries(
        self, execution_id: str, workflow: tuple[str, str], emits: list[Emit], at: float
    ) -> list[DeliveryRecord]:
        records = []
        for emit in emits:
            for subscription in self._subscriptions.values():
                if not matches(subscription, workflow[0], emit.kind):
                    continue
                delivery_id = "dlv_" + new_execution_id()
                body = {
                    "id": delivery_id,
                    "event": emit.kind,
                    "execution_id": execution_id,
                    "workflow": workflow[0],
                    "version": workflow[1],
                    "step_id": emit.step_id,
                    "data": emit.data,
                    "timestamp": timestamp(at),
                }
                raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
                records.append(
                    DeliveryRecord(
                        delivery_id, subscription.id, emit.kind, raw, at, next_attempt=at
                    )
                )
        return records

    # ------------------------------------------------------------------ sending

    async def _send_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                await self.refresh()  # subscriptions made through another instance
                sent = await self.send_due()
            except Exception:
                logger.exception("deliveries: cannot claim due deliveries; retrying")
                sent = 0
            if sent < _BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll)

    async def send_due(self) -> int:
        """Claim the deliveries due now (at most one batch) and attempt them: webhooks each
        on its own, at once; each event stream's in one publish, in order. The outcomes are
        recorded together. How many were attempted."""
        due = await self.store.claim_due_deliveries(self.clock(), _BATCH, self.lease)
        if any(d.webhook_id not in self._subscriptions for d in due):
            await self.refresh()
        posts = []
        streams: dict[str, tuple[EventStreamRecord, list[DeliveryRecord]]] = {}
        for delivery in due:
            subscription = self._subscriptions.get(delivery.webhook_id)
            if isinstance(subscription, EventStreamRecord):
                streams.setdefault(subscription.id, (subscription, []))[1].append(delivery)
            else:
                posts.append(self._post(subscription, delivery))
        publishes = [self._publish(stream, batch) for stream, batch in streams.values()]
        posted, published = await asyncio.gather(asyncio.gather(*posts), asyncio.gather(*publishes))
        await self.store.record_delivery_attempts([*posted, *(d for b in published for d in b)])
        return len(due)

    async def _post(
        self, webhook: WebhookRecord | None, delivery: DeliveryRecord
    ) -> DeliveryRecord:
        if webhook is None:
            gone = "subscription deleted"
            return replace(delivery, status="failed", next_attempt=None, last_error=gone)
        if self._client is None:
            return self._outcome(delivery, None, "the deliverer is not running")
        code, error = await webhooks.post(self._client, webhook, delivery, self.clock())
        return self._outcome(delivery, code, error)

    async def _publish(
        self, stream: EventStreamRecord, batch: list[DeliveryRecord]
    ) -> list[DeliveryRecord]:
        error = await event_streams.publish(self.brokers, stream, batch, self.timeout)
        return [self._outcome(d, None, error) for d in batch]

    def _outcome(
        self, delivery: DeliveryRecord, code: int | None, error: str | None
    ) -> DeliveryRecord:
        """The delivery after an attempt that answered ``code`` or failed with ``error``."""
        attempts = delivery.attempts + 1
        status, next_attempt = "pending", None
        if error is None:
            status = "delivered"
        elif attempts >= self.max_attempts:
            status = "failed"
        else:
            next_attempt = self.clock() + self.retry_delay(attempts)
        return replace(
            delivery,
            status=status,
            attempts=attempts,
            next_attempt=next_attempt,
            last_status=code,
            last_error=error,
        )

    def retry_delay(self, attempts: int) -> float:
        """Seconds before the attempt after ``attempts`` failed ones."""
        return float(min(self.max_backoff, self.backoff * 2 ** (attempts - 1)))

"""Webhooks: POST the lifecycle events of executions to the URLs subscribed to them.

``WebhookDeliverer.notify`` is a driver listener: after each commit it queues what the
transition emitted (nothing when no subscription exists). A fan-out task turns each event into
one delivery per matching subscription and writes them to the store, so a restart keeps what is
pending; a sender task POSTs the deliveries that are due and records each attempt (status,
response code or error, next attempt). A failed attempt is retried with exponential backoff
(``backoff`` · 2^(attempt-1), at most ``max_backoff``) until ``max_attempts``; then the delivery
is ``failed``. Deliveries are at least once: receivers deduplicate on the delivery id, which
stays the same across attempts.

Each request: the JSON body ``{id, event, execution_id, workflow, version, step_id, data,
timestamp}`` and the headers ``X-MagicFlow-Delivery`` (the id), ``X-MagicFlow-Event``,
``X-MagicFlow-Timestamp`` (epoch seconds of this attempt) and ``X-MagicFlow-Signature:
sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" keyed by the subscription's secret>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType

import httpx
import msgspec

from magicflow.engine.model import Emit, ExecutionState
from magicflow.service.ids import new_execution_id
from magicflow.service.state import timestamp
from magicflow.stores.base import DeliveryRecord, Store, WebhookRecord

logger = logging.getLogger(__name__)

_decode_state = msgspec.json.Decoder(ExecutionState).decode
_BATCH = 50
_Pending = tuple[str, list[Emit], float]  # execution id, what it emitted, when


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def new_webhook_id() -> str:
    return "wh_" + new_execution_id()


def sign(secret: str, at: str, body: bytes) -> str:
    """The ``X-MagicFlow-Signature`` value of ``body`` sent at ``at`` (epoch seconds)."""
    digest = hmac.new(secret.encode(), at.encode() + b"." + body, hashlib.sha256).hexdigest()
    return "sha256=" + digest


def matches(webhook: WebhookRecord, workflow: str, kind: str) -> bool:
    return webhook.workflow in (None, workflow) and (
        "*" in webhook.events or kind in webhook.events
    )


class WebhookDeliverer:
    """Delivers webhooks while entered (``async with``); ``notify`` is the driver listener."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 8,
        backoff: float = 1.0,
        max_backoff: float = 3600.0,
        timeout: float = 10.0,
        poll: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.poll = poll
        self._transport = transport
        self._webhooks: dict[str, WebhookRecord] = {}
        self._pending: list[_Pending] = []
        self._queued = asyncio.Event()
        self._wake = asyncio.Event()
        self._client: httpx.AsyncClient | None = None
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> WebhookDeliverer:
        await self.refresh()
        self._client = httpx.AsyncClient(
            transport=self._transport, timeout=self.timeout, follow_redirects=False
        )
        group = asyncio.TaskGroup()
        await group.__aenter__()
        self._group = group
        self._tasks = [
            group.create_task(self._fan_out_loop()),
            group.create_task(self._send_loop()),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        group, self._group = self._group, None
        try:
            if group is not None:
                await group.__aexit__(None, None, None)
            await self.fan_out()  # what was queued is written, to be sent after a restart
        finally:
            client, self._client = self._client, None
            if client is not None:
                await client.aclose()

    # ------------------------------------------------------------------ subscriptions

    async def refresh(self) -> None:
        """Read the subscriptions again (the API calls it after each change)."""
        self._webhooks = {w.id: w for w in await self.store.list_webhooks()}

    def notify(self, execution_id: str, emits: list[Emit]) -> None:
        if self._webhooks:
            self._pending.append((execution_id, emits, self.clock()))
            self._queued.set()

    # ------------------------------------------------------------------ fan-out

    async def _fan_out_loop(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            try:
                await self.fan_out()
            except Exception:
                logger.exception("webhooks: cannot enqueue deliveries; retrying")
                await asyncio.sleep(self.poll)

    async def fan_out(self) -> int:
        """Write the deliveries of every queued event; how many."""
        pending, self._pending = self._pending, []
        try:
            records: list[DeliveryRecord] = []
            workflows: dict[str, tuple[str, str] | None] = {}
            for execution_id, emits, at in pending:
                if execution_id not in workflows:
                    workflows[execution_id] = await self._workflow_of(execution_id)
                found = workflows[execution_id]
                if found is not None:
                    records += self._deliveries(execution_id, found, emits, at)
            if records:
                await self.store.enqueue_deliveries(records)
        except BaseException:
            self._pending[:0] = pending  # kept for the next try
            raise
        if records:
            self._wake.set()
        return len(records)

    async def _workflow_of(self, execution_id: str) -> tuple[str, str] | None:
        loaded = await self.store.load(execution_id)
        if loaded is None:
            return None
        state = _decode_state(loaded[1])
        return state.workflow, state.version

    def _deliveries(
        self, execution_id: str, workflow: tuple[str, str], emits: list[Emit], at: float
    ) -> list[DeliveryRecord]:
        records = []
        for emit in emits:
            for webhook in self._webhooks.values():
                if not matches(webhook, workflow[0], emit.kind):
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
                    DeliveryRecord(delivery_id, webhook.id, emit.kind, raw, at, next_attempt=at)
                )
        return records

    # ------------------------------------------------------------------ sending

    async def _send_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.refresh()  # subscriptions made through another instance
                sent = await self.send_due()
            except Exception:
                logger.exception("webhooks: cannot read due deliveries; retrying")
                sent = 0
            if sent < _BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll)

    async def send_due(self) -> int:
        """Attempt every delivery due now (at most one batch); how many were attempted."""
        due = await self.store.due_deliveries(self.clock(), _BATCH)
        if any(d.webhook_id not in self._webhooks for d in due):
            await self.refresh()
        async with asyncio.TaskGroup() as group:
            for delivery in due:
                group.create_task(self._attempt(delivery))
        return len(due)

    async def _attempt(self, delivery: DeliveryRecord) -> None:
        webhook = self._webhooks.get(delivery.webhook_id)
        attempts = delivery.attempts + 1
        if webhook is None:
            await self.store.record_delivery_attempt(
                replace(delivery, status="failed", next_attempt=None, last_error="webhook deleted")
            )
            return
        code, error = await self._post(webhook, delivery)
        status, next_attempt = "pending", None
        if error is None:
            status = "delivered"
        elif attempts >= self.max_attempts:
            status = "failed"
        else:
            next_attempt = self.clock() + self.retry_delay(attempts)
        outcome = replace(
            delivery,
            status=status,
            attempts=attempts,
            next_attempt=next_attempt,
            last_status=code,
            last_error=error,
        )
        await self.store.record_delivery_attempt(outcome)

    def retry_delay(self, attempts: int) -> float:
        """Seconds before the attempt after ``attempts`` failed ones."""
        return float(min(self.max_backoff, self.backoff * 2 ** (attempts - 1)))

    async def _post(
        self, webhook: WebhookRecord, delivery: DeliveryRecord
    ) -> tuple[int | None, str | None]:
        """The response's status code (if any) and, unless it is a 2xx, what went wrong."""
        if self._client is None:
            return None, "the deliverer is not running"
        at = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "magicflow-webhooks",
            "X-MagicFlow-Delivery": delivery.id,
            "X-MagicFlow-Event": delivery.event,
            "X-MagicFlow-Timestamp": at,
            "X-MagicFlow-Signature": sign(webhook.secret, at, delivery.body),
        }
        try:
            response = await self._client.post(webhook.url, content=delivery.body, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if response.is_success:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}"

"""Webhooks: lifecycle events POSTed to the URLs subscribed to them (the ``Deliverer`` of
``service/deliveries.py`` decides what to send and when; this module sends one).

Each request: the delivery's JSON body and the headers ``X-MagicFlow-Delivery`` (the id),
``X-MagicFlow-Event``, ``X-MagicFlow-Timestamp`` (epoch seconds of this attempt) and
``X-MagicFlow-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" keyed by the
subscription's secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import httpx

from magicflow.service.ids import new_execution_id
from magicflow.stores.base import DeliveryRecord, WebhookRecord


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def new_webhook_id() -> str:
    return "wh_" + new_execution_id()


def sign(secret: str, at: str, body: bytes) -> str:
    """The ``X-MagicFlow-Signature`` value of ``body`` sent at ``at`` (epoch seconds)."""
    digest = hmac.new(secret.encode(), at.encode() + b"." + body, hashlib.sha256).hexdigest()
    return "sha256=" + digest


async def post(
    client: httpx.AsyncClient, webhook: WebhookRecord, delivery: DeliveryRecord, now: float
) -> tuple[int | None, str | None]:
    """POST one delivery: the response's status code (if any) and, unless it is a 2xx, what
    went wrong."""
    at = str(int(now))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "magicflow-webhooks",
        "X-MagicFlow-Delivery": delivery.id,
        "X-MagicFlow-Event": delivery.event,
        "X-MagicFlow-Timestamp": at,
        "X-MagicFlow-Signature": sign(webhook.secret, at, delivery.body),
    }
    try:
        response = await client.post(webhook.url, content=delivery.body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if response.is_success:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"

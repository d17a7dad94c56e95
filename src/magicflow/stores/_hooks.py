"""How the durable backends store webhook subscriptions, event streams, deliveries, triggers
and schedules: each record as JSON (msgspec), beside the few columns they index."""

from __future__ import annotations

import msgspec

from magicflow.stores.base import (
    DeliveryRecord,
    EventStreamRecord,
    ScheduleRecord,
    TriggerRecord,
    WebhookRecord,
)

encode = msgspec.json.Encoder().encode
decode_webhook = msgspec.json.Decoder(WebhookRecord).decode
decode_delivery = msgspec.json.Decoder(DeliveryRecord).decode
decode_schedule = msgspec.json.Decoder(ScheduleRecord).decode
decode_event_stream = msgspec.json.Decoder(EventStreamRecord).decode
decode_trigger = msgspec.json.Decoder(TriggerRecord).decode


def delivery_due(record: DeliveryRecord) -> float | None:
    """When the delivery is attempted next (None once it is not pending)."""
    return record.next_attempt if record.status == "pending" else None

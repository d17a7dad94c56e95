"""How the durable backends store webhook subscriptions, deliveries and schedules: each
record as JSON (msgspec), beside the few columns they index."""

from __future__ import annotations

import msgspec

from magicflow.stores.base import DeliveryRecord, ScheduleRecord, WebhookRecord

encode = msgspec.json.Encoder().encode
decode_webhook = msgspec.json.Decoder(WebhookRecord).decode
decode_delivery = msgspec.json.Decoder(DeliveryRecord).decode
decode_schedule = msgspec.json.Decoder(ScheduleRecord).decode

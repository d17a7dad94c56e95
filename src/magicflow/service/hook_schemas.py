"""Request and response bodies of webhooks, event streams, triggers and schedules."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from magicflow.service.scheduler import valid_cron
from magicflow.service.schemas import _JsonBody
from magicflow.service.triggers import INPUT_SELECTION, KEY_SELECTION

EventKind = Annotated[str, Field(max_length=100, pattern=r"^(\*|[a-z_]+\.[a-z_]+)$")]
Queue = Annotated[
    str,
    Field(
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="A queue or topic name: letters, digits, '.', '_', '-'.",
    ),
]
BrokerUrl = Annotated[
    str | None,
    Field(
        default=None,
        max_length=2000,
        pattern=r"^[a-z]+://[^\s]*$",
        description="A broker URL (redis://, amqp://, nats://, kafka://); default: the "
        "service's own broker (its --broker).",
    ),
]
Events = Annotated[
    list[EventKind],
    Field(
        min_length=1,
        max_length=50,
        description='Event kinds (``execution.completed``, ``step.failed`` ...) or ``"*"``.',
    ),
]


class WebhookIn(_JsonBody):
    url: str = Field(max_length=2000, pattern=r"^https?://[^\s]+$", description="Where to POST.")
    workflow: str | None = Field(
        default=None, max_length=200, description="Only this workflow's executions (all if absent)."
    )
    events: Events
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=200,
        description="The HMAC key of the signatures (one is made and shown once if absent).",
    )


class WebhookOut(BaseModel):
    id: str
    url: str
    workflow: str | None
    events: list[str]
    created_at: str


class WebhookCreated(WebhookOut):
    secret: str = Field(description="Shown in this answer only: keep it to verify signatures.")


class WebhookList(BaseModel):
    items: list[WebhookOut]


class EventStreamIn(_JsonBody):
    queue: Queue
    broker: BrokerUrl
    workflow: str | None = Field(
        default=None, max_length=200, description="Only this workflow's executions (all if absent)."
    )
    events: Events


class EventStreamOut(BaseModel):
    id: str
    queue: str
    broker: str | None = Field(description="The broker URL, without its password.")
    workflow: str | None
    events: list[str]
    created_at: str


class EventStreamList(BaseModel):
    items: list[EventStreamOut]


class TriggerIn(_JsonBody):
    queue: Queue
    broker: BrokerUrl
    version: str | None = Field(
        default=None, min_length=1, max_length=200, description="Default: the latest."
    )
    idempotency_key: str = Field(
        max_length=200,
        pattern=KEY_SELECTION,
        description='Where the idempotency key of each message is: "message.order.id" (a field of '
        'the JSON message, a string or an integer) or "key" (the message key, on brokers '
        "that have one: Kafka). A message delivered again starts no second execution.",
    )
    input: str = Field(
        default="message",
        max_length=200,
        pattern=INPUT_SELECTION,
        description='The execution input: "message" (the whole JSON message) or a field of '
        'it ("message.order").',
    )


class TriggerOut(BaseModel):
    id: str
    workflow: str
    queue: str
    broker: str | None = Field(description="The broker URL, without its password.")
    version: str | None
    idempotency_key: str
    input: str
    created_at: str
    consuming: bool = Field(description="This service instance consumes the queue now.")
    last_error: str | None = Field(
        description="Why this instance's consumer could not receive lately (null: it can)."
    )


class TriggerList(BaseModel):
    items: list[TriggerOut]


class DeliveryOut(BaseModel):
    id: str = Field(description="The delivery id (``X-MagicFlow-Delivery``), kept on retries.")
    event: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt: str | None
    last_status: int | None = Field(
        description="The receiver's last HTTP status code (webhooks; null for event streams)."
    )
    last_error: str | None
    created_at: str


class DeliveryList(BaseModel):
    items: list[DeliveryOut]


class ScheduleIn(_JsonBody):
    cron: str = Field(max_length=200, description='Five cron fields, UTC: "*/5 * * * *".')
    input: Any = Field(default=None, description="The input of each execution ({} if absent).")
    version: str | None = Field(default=None, max_length=200)
    missed: Literal["skip", "run_once"] = Field(
        default="skip",
        description="After downtime: skip the missed ticks, or run once for the latest one.",
    )
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        problem = valid_cron(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class ScheduleOut(BaseModel):
    id: str
    workflow: str
    cron: str
    input: Any
    version: str | None
    missed: str
    enabled: bool
    next_run: str
    created_at: str


class ScheduleList(BaseModel):
    items: list[ScheduleOut]

"""Request and response bodies of webhooks and schedules."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from magicflow.service.scheduler import valid_cron
from magicflow.service.schemas import _JsonBody

EventKind = Annotated[str, Field(max_length=100, pattern=r"^(\*|[a-z_]+\.[a-z_]+)$")]


class WebhookIn(_JsonBody):
    url: str = Field(max_length=2000, pattern=r"^https?://[^\s]+$", description="Where to POST.")
    workflow: str | None = Field(
        default=None, max_length=200, description="Only this workflow's executions (all if absent)."
    )
    events: list[EventKind] = Field(
        min_length=1,
        max_length=50,
        description='Event kinds (``execution.completed``, ``step.failed`` ...) or ``"*"``.',
    )
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


class DeliveryOut(BaseModel):
    id: str = Field(description="The delivery id (``X-MagicFlow-Delivery``), kept on retries.")
    event: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt: str | None
    last_status: int | None = Field(description="The receiver's last HTTP status code.")
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

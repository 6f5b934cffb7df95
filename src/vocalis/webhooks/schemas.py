"""API shapes for webhook endpoints and deliveries."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vocalis.events.registry import EVENTS


def _known_event_types(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    unknown = sorted({v for v in value if v not in EVENTS})
    if unknown:
        raise ValueError(f"unknown event type(s): {', '.join(unknown)}; known: {', '.join(EVENTS)}")
    return sorted(set(value))


class WebhookCreate(BaseModel):
    """A new endpoint."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048, description="http(s) URL receiving events.")
    description: str = Field(default="", max_length=500)
    event_types: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Event types to deliver; empty = every type.",
    )
    enabled: bool = True

    _check_types = field_validator("event_types")(_known_event_types)


class WebhookUpdate(BaseModel):
    """Fields of an endpoint that can change; re-enabling resets its failure count."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=1, max_length=2048)
    description: str | None = Field(default=None, max_length=500)
    event_types: list[str] | None = Field(default=None, max_length=50)
    enabled: bool | None = None

    _check_types = field_validator("event_types")(_known_event_types)


class WebhookOut(BaseModel):
    """An endpoint (never its secret)."""

    model_config = ConfigDict(from_attributes=True)

    object: str = "webhook_endpoint"
    id: str
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    consecutive_failures: int
    failing_since: datetime | None
    last_success_at: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class WebhookWithSecret(WebhookOut):
    """An endpoint as created (or after a secret rotation): `secret` is shown this once."""

    secret: str = Field(description="`whsec_…`: verify signatures with it.")


class AttemptOut(BaseModel):
    """One HTTP attempt of a delivery."""

    model_config = ConfigDict(from_attributes=True)

    number: int
    status: str
    status_code: int | None
    latency_ms: int | None
    response_body: str | None = Field(description="The first 2 KB of the answer.")
    error: str | None
    started_at: datetime
    finished_at: datetime | None


class DeliveryOut(BaseModel):
    """One event on its way to the endpoint, with every attempt."""

    object: str = "webhook_delivery"
    id: str
    event_id: str = Field(description="Also the `webhook-id` header: deduplicate on it.")
    event_type: str
    status: str
    attempts: list[AttemptOut]
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime


class TestEventOut(BaseModel):
    """The test event that was queued."""

    object: str = "event"
    id: str
    type: str
    created_at: datetime

"""Webhook endpoints, deliveries (one event to one endpoint) and their attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vocalis.core.db import Base, OrgScoped, Timestamps, utcnow
from vocalis.core.ids import new_id


class WebhookEndpoint(OrgScoped, Timestamps, Base):
    """A URL that receives an organisation's events."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_org_id_created_at", "org_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("whe"))
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(500), default="")
    event_types: Mapped[list[Any]] = mapped_column(
        default=list, comment="Event types delivered; empty = every type."
    )
    secret_encrypted: Mapped[str] = mapped_column(
        Text, comment="The signing secret `whsec_…`, Fernet-encrypted."
    )
    enabled: Mapped[bool] = mapped_column(default=True)
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    failing_since: Mapped[datetime | None] = mapped_column(default=None)
    last_success_at: Mapped[datetime | None] = mapped_column(default=None)
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
    disabled_reason: Mapped[str | None] = mapped_column(String(500), default=None)

    def subscribes_to(self, event_type: str) -> bool:
        """Whether this endpoint wants events of `event_type`."""
        return not self.event_types or event_type in self.event_types


class DeliveryStatus:
    """States of a delivery."""

    PENDING = "pending"  # waiting for its first attempt
    RETRYING = "retrying"  # failed, next attempt scheduled
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # retries exhausted or permanent failure (dead-lettered)
    SKIPPED = "skipped"  # the endpoint was disabled or deleted before it could be sent

    OPEN = (PENDING, RETRYING)


class WebhookDelivery(OrgScoped, Timestamps, Base):
    """One event on its way to one endpoint; its `event_id` is the `webhook-id`."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id"),
        Index("ix_webhook_deliveries_endpoint_id_created_at", "endpoint_id", "created_at"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("dlv"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0, comment="Attempts made, all runs.")
    retries_in_run: Mapped[int] = mapped_column(
        default=0, comment="Failed attempts since the last (re)start; indexes the schedule."
    )
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(
        default=None, comment="When its queue message is due to run; null = not enqueued."
    )
    last_status_code: Mapped[int | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(String(1000), default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


class AttemptStatus:
    """States of one attempt."""

    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the worker died while sending


class WebhookAttempt(OrgScoped, Base):
    """One HTTP request of a delivery and what came back."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery_id_number", "delivery_id", "number"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("att"))
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(comment="1 for the first attempt of the delivery.")
    status: Mapped[str] = mapped_column(String(20), default=AttemptStatus.IN_PROGRESS)
    status_code: Mapped[int | None] = mapped_column(default=None)
    latency_ms: Mapped[int | None] = mapped_column(default=None)
    response_body: Mapped[str | None] = mapped_column(
        Text, default=None, comment="The first 2 KB of the answer."
    )
    error: Mapped[str | None] = mapped_column(String(1000), default=None)
    task_id: Mapped[str | None] = mapped_column(String(64), default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

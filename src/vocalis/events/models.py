"""The outbox table: one row per event, written in the transaction of the state change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from vocalis.core.db import Base, OrgScoped, utcnow
from vocalis.core.ids import new_id


class OutboxEvent(OrgScoped, Base):
    """A domain event; `dispatched_at` is set once its webhook deliveries exist."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_events_dispatched_at_created_at", "dispatched_at", "created_at"),
        Index("ix_outbox_events_held_at", "held_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("evt"))
    type: Mapped[str] = mapped_column(String(100))
    api_version: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    target_endpoint_id: Mapped[str | None] = mapped_column(
        String(40),
        default=None,
        comment="Deliver to this endpoint only (test events); null = every subscriber.",
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(default=None)
    held_at: Mapped[datetime | None] = mapped_column(
        default=None,
        comment="Set while the event waits for its document-store change: not dispatched "
        "until released (the change happened) or deleted (it did not).",
    )
    witness: Mapped[dict[str, Any] | None] = mapped_column(
        default=None,
        comment="Held events: the document (collection, doc_id, match) that exists once "
        "the change happened; the reconciler settles a stale held event by it.",
    )

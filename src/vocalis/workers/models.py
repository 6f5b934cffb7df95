"""The dead-letter store: tasks that exhausted their retries or failed permanently."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vocalis.core.db import Base, Timestamps
from vocalis.core.ids import new_id


class DeadLetterStatus:
    """States of a dead letter."""

    OPEN = "open"
    REPLAYED = "replayed"
    DISCARDED = "discarded"


class DeadLetter(Timestamps, Base):
    """One failed task, kept for an operator to inspect, replay or discard."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        Index("ix_dead_letters_org_id_status_created_at", "org_id", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("dlq"))
    org_id: Mapped[str | None] = mapped_column(
        String(40), default=None, comment="Organisation whose work failed; null for system tasks."
    )
    task_name: Mapped[str] = mapped_column(String(200), index=True)
    task_id: Mapped[str] = mapped_column(String(64))
    queue: Mapped[str] = mapped_column(String(64), default="default")
    args: Mapped[list[Any]] = mapped_column(default=list, comment="Secrets redacted.")
    kwargs: Mapped[dict[str, Any]] = mapped_column(default=dict, comment="Secrets redacted.")
    replayable: Mapped[bool] = mapped_column(
        default=True, comment="False when redaction changed the arguments (replay impossible)."
    )
    error_type: Mapped[str] = mapped_column(String(200))
    error: Mapped[str] = mapped_column(Text)
    transient: Mapped[bool] = mapped_column(
        default=False, comment="True: retries were exhausted; false: a permanent failure."
    )
    attempts: Mapped[int] = mapped_column(default=1)
    first_failed_at: Mapped[datetime]
    last_failed_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20), default=DeadLetterStatus.OPEN)
    replay_count: Mapped[int] = mapped_column(default=0)
    replayed_at: Mapped[datetime | None] = mapped_column(default=None)
    replay_task_id: Mapped[str | None] = mapped_column(String(64), default=None)
    discarded_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_by: Mapped[str | None] = mapped_column(
        String(40), default=None, comment="API key that replayed or discarded it."
    )

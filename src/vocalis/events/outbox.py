"""Recording events in the caller's transaction, and finding the ones not yet dispatched.

A domain calls `record_event` inside the database transaction that changes its state:

    async with backends.database.session() as session:
        conversation.status = "ended"
        await record_event(session=session, org_id=org_id, type="conversation.ended",
                           data={...})

The event row commits or rolls back with the change, so there is never a webhook for a
change that did not happen, nor a change without its webhook. Right after the commit the
dispatch task is published (best effort); if the broker is down, the periodic outbox sweep
dispatches the event later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from vocalis.core.db import utcnow
from vocalis.core.errors import ValidationFailed
from vocalis.core.metrics import OUTBOX_EVENTS
from vocalis.events.models import OutboxEvent
from vocalis.webhooks.events import API_VERSION, EVENTS

DISPATCH_TASK = "vocalis.webhooks.dispatch_event"
_PENDING = "vocalis.outbox.pending"
_HOOKED = "vocalis.outbox.hooked"


class UnknownEventType(ValueError):
    """The event type is not in the registry."""


async def record_event(
    *,
    session: AsyncSession,
    org_id: str,
    type: str,
    data: dict[str, Any],
    endpoint_id: str | None = None,
    idempotency_key: str | None = None,
) -> OutboxEvent:
    """Add an event to the outbox in the session's transaction; dispatched after commit.

    With an `idempotency_key` the event id is derived from it, so recording the same
    event twice (a retried task) returns the first one instead of a duplicate.
    """
    spec = EVENTS.get(type)
    if spec is None:
        raise UnknownEventType(f"unknown event type {type!r}; known: {', '.join(EVENTS)}")
    try:
        payload = spec.validate(data)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ValidationFailed(f"Event {type} data is invalid: {exc}") from exc
    event_id = _event_id(org_id, type, idempotency_key) if idempotency_key else None
    if event_id is not None:
        existing = await session.get(OutboxEvent, event_id)
        if existing is not None:
            return existing
    row = OutboxEvent(
        org_id=org_id,
        type=type,
        api_version=API_VERSION,
        data=payload,
        target_endpoint_id=endpoint_id,
        created_at=utcnow(),
    )
    if event_id is not None:
        row.id = event_id
    session.add(row)
    await session.flush()
    OUTBOX_EVENTS.labels(type=type).inc()
    _dispatch_after_commit(session, row.id)
    return row


def _event_id(org_id: str, type: str, key: str) -> str:
    digest = hashlib.sha256(f"{org_id}|{type}|{key}".encode()).hexdigest()
    return f"evt_{digest[:32]}"


def _dispatch_after_commit(session: AsyncSession, event_id: str) -> None:
    sync = session.sync_session
    sync.info.setdefault(_PENDING, []).append(event_id)
    if sync.info.get(_HOOKED):
        return
    sync.info[_HOOKED] = True
    sa_event.listen(sync, "after_commit", _after_commit)
    sa_event.listen(sync, "after_rollback", _after_rollback)


def _after_commit(sync: Session) -> None:
    ids: list[str] = sync.info.pop(_PENDING, [])
    if not ids:
        return
    from vocalis.workers.publish import publish_in_background

    for event_id in ids:
        publish_in_background(DISPATCH_TASK, [event_id])


def _after_rollback(sync: Session) -> None:
    # The events rolled back with the transaction: there is nothing to dispatch.
    sync.info.pop(_PENDING, None)


async def undispatched(
    *, session: AsyncSession, older_than: timedelta, limit: int
) -> Sequence[OutboxEvent]:
    """Events of every organisation still waiting for dispatch, oldest first."""
    cutoff = utcnow() - older_than
    rows = await session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.dispatched_at.is_(None), OutboxEvent.created_at <= cutoff)
        .order_by(OutboxEvent.created_at)
        .limit(limit)
    )
    return rows.all()


async def claim(*, session: AsyncSession, event_id: str) -> OutboxEvent | None:
    """Lock an undispatched event for dispatch; None when it is gone or already dispatched."""
    query = select(OutboxEvent).where(
        OutboxEvent.id == event_id, OutboxEvent.dispatched_at.is_(None)
    )
    if session.get_bind().dialect.name == "postgresql":
        # A concurrent dispatcher (sweep and immediate publish) skips instead of waiting.
        query = query.with_for_update(skip_locked=True)
    row: OutboxEvent | None = await session.scalar(query)
    return row


async def mark_dispatched(*, session: AsyncSession, event: OutboxEvent) -> None:
    """Record that the event's deliveries exist."""
    event.dispatched_at = utcnow()
    await session.flush()


__all__ = [
    "DISPATCH_TASK",
    "UnknownEventType",
    "claim",
    "mark_dispatched",
    "record_event",
    "undispatched",
]

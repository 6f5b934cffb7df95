"""From outbox event to queued deliveries, and the sweep that makes the pair lossless.

`dispatch_event` turns one outbox event into one delivery per subscribed endpoint (a
unique `(event_id, endpoint_id)` makes a second dispatch a no-op) and publishes a
delivery task for each. `sweep` runs every few seconds from beat: it dispatches events
whose immediate publish was lost (the broker was down) and enqueues deliveries that are
due but have no live queue message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

import structlog
from sqlalchemy import Connection, bindparam, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vocalis.core.backends import Backends
from vocalis.core.db import utcnow
from vocalis.events import outbox
from vocalis.events.models import OutboxEvent
from vocalis.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from vocalis.workers import publish
from vocalis.workers.retry import TransientError

log = structlog.get_logger(__name__)

DELIVER_TASK = "vocalis.webhooks.deliver"
SWEEP_BATCH = 500


@dataclass(frozen=True)
class Consumer:
    """A task the platform itself runs for every event of a type."""

    task: str
    kwargs: Callable[[OutboxEvent], dict[str, Any]]
    wants: Callable[[OutboxEvent], bool] = lambda event: True


def _conversation(event: OutboxEvent) -> dict[str, Any]:
    return {"org_id": event.org_id, "conversation_id": str(event.data["conversation_id"])}


def _not_one_off(event: OutboxEvent) -> bool:
    # `completed` ends only one-off chat completions, which are never analysed: no task.
    return event.data.get("reason") != "completed"


# Internal consumers ride on the outbox too, so they survive a broker outage like webhooks.
EVENT_CONSUMERS: dict[str, tuple[Consumer, ...]] = {
    "conversation.ended": (
        Consumer("vocalis.conversations.analysis.analyze", _conversation, _not_one_off),
    ),
}


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did."""

    events_dispatched: int
    deliveries_enqueued: int


def settle_undeliverable(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> bool:
    """Dispatch, in the transaction that has just inserted them, outbox events whose
    dispatch would create nothing: none targets an endpoint, no platform consumer wants
    one (`EVENT_CONSUMERS`), and no organisation of theirs has an enabled webhook endpoint.
    They are marked dispatched, as the dispatch task would mark them, and True says that
    no dispatch task is needed; otherwise nothing is changed (False).

    The endpoints are read when the events are committed rather than when a worker picks
    the message up a few milliseconds later, so an endpoint created in between does not
    get them: it did not exist when they happened (`OutboxSink.record_with_documents`).
    The endpoint check and the marking are one statement (an UPDATE of the events guarded
    by `NOT EXISTS` an enabled endpoint), built once per number of events and
    organisations."""
    if not rows:
        return False
    for row in rows:
        if row.get("target_endpoint_id") or row.get("held_at") is not None:
            return False
        consumers = EVENT_CONSUMERS.get(row["type"], ())
        if consumers:
            event = cast(OutboxEvent, _EventView(row["org_id"], row["type"], row["data"]))
            if any(c.wants(event) for c in consumers):
                return False
    orgs = sorted({str(row["org_id"]) for row in rows})
    params: dict[str, Any] = {f"o{i}": org for i, org in enumerate(orgs)}
    params.update({f"e{i}": row["id"] for i, row in enumerate(rows)})
    params["now"] = utcnow()
    marked = conn.execute(_mark_undeliverable(len(rows), len(orgs)), params).rowcount
    # All or none: the guard is the same for every row of the statement.
    return bool(marked)


@dataclass(frozen=True, slots=True)
class _EventView:
    """What a consumer's `wants` reads of an event, for a row not loaded as an ORM object."""

    org_id: str
    type: str
    data: Mapping[str, Any]


@lru_cache(maxsize=64)
def _mark_undeliverable(events: int, orgs: int) -> Any:
    """UPDATE `events` outbox rows (`:e0`…) to dispatched at `:now` unless one of `orgs`
    organisations (`:o0`…) has an enabled endpoint: plain bound parameters, compiled once
    per shape (expanding IN lists are re-rendered on every execution)."""
    endpoint = (
        select(WebhookEndpoint.id)
        .where(
            WebhookEndpoint.org_id.in_([bindparam(f"o{i}") for i in range(orgs)]),
            WebhookEndpoint.enabled.is_(True),
        )
        .exists()
    )
    return (
        update(OutboxEvent)
        .where(OutboxEvent.id.in_([bindparam(f"e{i}") for i in range(events)]), ~endpoint)
        .values(dispatched_at=bindparam("now"))
        .execution_options(synchronize_session=False)
    )


async def dispatch_event(backends: Backends, event_id: str) -> list[str]:
    """Create the deliveries of one event and enqueue them; the new delivery ids."""
    try:
        async with backends.database.session() as session:
            event = await outbox.claim(session=session, event_id=event_id)
            if event is None:
                return []
            ids = await _deliveries(session, backends, [event])
    except IntegrityError:
        # Another dispatcher created these deliveries first (SQLite has no SKIP LOCKED).
        log.info("outbox_event_already_dispatched", event_id=event_id)
        return []
    await enqueue_deliveries(backends, ids)
    return ids


async def dispatch_events(backends: Backends, event_ids: Sequence[str]) -> list[str]:
    """`dispatch_event` for several events in one transaction (one claim, one endpoint
    query per organisation, one commit); the new delivery ids, in the events' order.

    When another dispatcher got to one of them first, the events are dispatched one by one
    instead (each of the others still once)."""
    if len(event_ids) <= 1:
        return [d for event_id in event_ids for d in await dispatch_event(backends, event_id)]
    try:
        async with backends.database.session() as session:
            claimed = {e.id: e for e in await outbox.claim_many(session=session, ids=event_ids)}
            events = [claimed[i] for i in dict.fromkeys(event_ids) if i in claimed]
            if not events:
                return []
            ids = await _deliveries(session, backends, events)
    except IntegrityError:
        log.info("outbox_events_already_dispatched", events=len(event_ids))
        return [d for event_id in event_ids for d in await dispatch_event(backends, event_id)]
    await enqueue_deliveries(backends, ids)
    return ids


async def _deliveries(
    session: AsyncSession, backends: Backends, events: Sequence[OutboxEvent]
) -> list[str]:
    """Add the deliveries of claimed `events`, mark them dispatched and start their
    consumers (in the caller's transaction); the new delivery ids."""
    orgs = sorted({e.org_id for e in events})
    rows = await session.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.org_id.in_(orgs), WebhookEndpoint.enabled.is_(True)
        )
    )
    by_org: dict[str, list[WebhookEndpoint]] = {}
    for endpoint in rows.all():
        by_org.setdefault(endpoint.org_id, []).append(endpoint)
    now = utcnow()
    deliveries = []
    for event in events:
        target = event.target_endpoint_id
        endpoints = [
            e
            for e in by_org.get(event.org_id, [])
            if (e.id == target if target else e.subscribes_to(event.type))
        ]
        deliveries += [
            WebhookDelivery(
                org_id=event.org_id,
                endpoint_id=endpoint.id,
                event_id=event.id,
                event_type=event.type,
                next_attempt_at=now,
                enqueued_at=now,
            )
            for endpoint in endpoints
        ]
        event.dispatched_at = now
    session.add_all(deliveries)
    await session.flush()
    # Before the commit: if the broker refuses, the events stay undispatched and the sweep
    # tries again (consumers are idempotent, a repeat is harmless).
    for event in events:
        await _start_consumers(backends, event)
    return [d.id for d in deliveries]


async def _start_consumers(backends: Backends, event: OutboxEvent) -> None:
    for consumer in EVENT_CONSUMERS.get(event.type, ()):
        if not consumer.wants(event):
            continue
        sent = await publish.enqueue(
            backends.settings, consumer.task, kwargs=consumer.kwargs(event)
        )
        if sent is None:
            raise TransientError(f"could not enqueue {consumer.task} for event {event.id}")


async def enqueue_deliveries(
    backends: Backends, delivery_ids: Sequence[str], *, countdown: float | None = None
) -> int:
    """Publish a delivery task for each id; ids that could not be published go to the sweep."""
    unsent = []
    for delivery_id in delivery_ids:
        sent = await publish.enqueue(
            backends.settings, DELIVER_TASK, [delivery_id], countdown=countdown
        )
        if sent is None:
            unsent.append(delivery_id)
    if unsent:
        async with backends.database.session() as session:
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(unsent))
                .values(enqueued_at=None)
            )
    return len(delivery_ids) - len(unsent)


async def sweep(backends: Backends) -> SweepReport:
    """Dispatch stranded events, then enqueue due deliveries without a live message."""
    settings = backends.settings
    # Conversation events whose writer died (or lost the database) between the outbox and
    # the document store: released or dropped by what the document store shows.
    await outbox.settle_held(
        backends.database,
        backends.documents,
        older_than=timedelta(seconds=settings.outbox_settle_held_after_s),
        limit=SWEEP_BATCH,
    )
    async with backends.database.session() as session:
        events = await outbox.undispatched(
            session=session,
            older_than=timedelta(seconds=settings.outbox_sweep_interval_s),
            limit=SWEEP_BATCH,
        )
        event_ids = [e.id for e in events]
    dispatched = 0
    for event_id in event_ids:
        try:
            await dispatch_event(backends, event_id)
        except TransientError as exc:  # the broker went away again: next sweep
            log.warning("outbox_sweep_interrupted", error=str(exc))
            break
        dispatched += 1
    now = utcnow()
    stale = now - timedelta(seconds=settings.webhook_requeue_after_s)
    async with backends.database.session() as session:
        rows = await session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status.in_(DeliveryStatus.OPEN),
                WebhookDelivery.next_attempt_at <= now,
                or_(WebhookDelivery.enqueued_at.is_(None), WebhookDelivery.enqueued_at < stale),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(SWEEP_BATCH)
        )
        due = list(rows.all())
        if due:
            await session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id.in_(due)).values(enqueued_at=now)
            )
    enqueued = await enqueue_deliveries(backends, due) if due else 0
    if dispatched or enqueued:
        log.info("outbox_sweep", events_dispatched=dispatched, deliveries_enqueued=enqueued)
    return SweepReport(dispatched, enqueued)


async def prune_history(backends: Backends, now: datetime | None = None) -> int:
    """Delete events older than the history window once none of their deliveries is open."""
    cutoff = (now or utcnow()) - timedelta(days=backends.settings.webhook_history_days)
    open_delivery = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.event_id == OutboxEvent.id,
            WebhookDelivery.status.in_(DeliveryStatus.OPEN),
        )
        .exists()
    )
    async with backends.database.session() as session:
        result = await session.execute(
            delete(OutboxEvent).where(
                OutboxEvent.dispatched_at.is_not(None),
                OutboxEvent.created_at < cutoff,
                ~open_delivery,
            )
        )
    # Deliveries and attempts go with their event (ON DELETE CASCADE).
    return int(getattr(result, "rowcount", 0) or 0)

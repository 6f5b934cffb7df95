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
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import delete, insert, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from vocalis.core.db import Database, utcnow
from vocalis.core.errors import ValidationFailed
from vocalis.core.ids import new_id
from vocalis.core.metrics import OUTBOX_EVENTS
from vocalis.events.models import OutboxEvent
from vocalis.events.registry import API_VERSION, EVENTS
from vocalis.ports.document_store import DocumentStore, Inserts, SharedTransactionStore
from vocalis.ports.events import EventSink, NamedEvent, Witness

DISPATCH_TASK = "vocalis.webhooks.dispatch_event"
# The events of one transaction (a one-off conversation's) go in one message.
DISPATCH_MANY_TASK = "vocalis.webhooks.dispatch_events"
_PENDING = "vocalis.outbox.pending"
_HOOKED = "vocalis.outbox.hooked"

log = structlog.get_logger(__name__)


class UnknownEventType(ValueError):
    """The event type is not in the registry."""


def _validated(type: str, data: dict[str, Any]) -> dict[str, Any]:
    spec = EVENTS.get(type)
    if spec is None:
        raise UnknownEventType(f"unknown event type {type!r}; known: {', '.join(EVENTS)}")
    try:
        return spec.validate(data)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ValidationFailed(f"Event {type} data is invalid: {exc}") from exc


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
    payload = _validated(type, data)
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


class OutboxSink:
    """The process's event sink: the transactional outbox (webhooks).

    Conversations live in the document store, so their events cannot share the change's
    transaction. `guarded` closes that gap (see `vocalis.ports.events`): the events are
    written first, held, with a witness; then the document-store change is made; then they
    are released for dispatch, or deleted when the change did not happen. A crash or a
    database error after the first write leaves held events, which `settle_held` (run by
    the outbox sweep) releases or deletes by looking the witness up in the document store.
    Event ids are fixed when the events are held, so a release and a reconciliation racing
    each other dispatch each event once.

    Plain calls (`__call__`, `record_many`) record events with no document-store change in
    one transaction each; a failure is logged.
    """

    def __init__(self, database: Database) -> None:
        self.database = database

    async def __call__(self, name: str, payload: Mapping[str, Any]) -> None:
        await self.record_many([(name, payload)])

    async def record_many(self, events: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Record `events` (name, payload with `org_id`) in one transaction."""
        try:
            async with self.database.session() as session:
                for name, payload in events:
                    data = {k: v for k, v in payload.items() if k != "org_id"}
                    await record_event(
                        session=session, org_id=str(payload["org_id"]), type=name, data=data
                    )
        except Exception:
            log.exception("event_not_recorded", events=[name for name, _ in events])

    async def guarded(
        self,
        events: Sequence[NamedEvent],
        witness: Witness,
        change: Callable[[], Awaitable[bool]],
    ) -> bool:
        """Hold `events`, make `change`, release or drop them (see the class doc).

        Raises, without making the change, when the events cannot be written. When `change`
        raises, the held events are left to the reconciler: the change may have happened."""
        rows = [_held_row(name, payload, witness) for name, payload in events]
        async with self.database.session() as session:
            session.add_all(rows)
        snapshots = [_snapshot(row) for row in rows]
        done = await change()
        try:
            if done:
                await release(self.database, snapshots)
            else:
                await _drop(self.database, [row["id"] for row in snapshots])
        except Exception:
            # The reconciler settles them: the change is in the document store (or not).
            log.exception("held_events_not_settled", events=[row["id"] for row in snapshots])
        return done

    async def record_with_documents(
        self,
        events: Sequence[NamedEvent],
        documents: DocumentStore,
        inserts: Inserts,
        *,
        settle: Callable[[Any, Sequence[Mapping[str, Any]]], bool] | None = None,
    ) -> bool:
        """Record `events` and insert the documents of `inserts` in one transaction, when
        the document store lives in this database (the JSON table); False, with nothing
        done, when it does not (then use `guarded`). Raises `DuplicateKey`, with nothing
        stored, when a document's `_id` exists.

        `settle(connection, rows)`, run in that transaction after the events are inserted,
        may dispatch them there (`webhooks.dispatch.settle_undeliverable`: when dispatching
        would create nothing, it marks them dispatched) and returns True when it did; then
        no dispatch task is published."""
        if not isinstance(documents, SharedTransactionStore) or not documents.shares_database(
            self.database
        ):
            return False
        rows = [_event_values(name, payload) for name, payload in events]
        settled = False

        def also(conn: Any) -> None:
            nonlocal settled
            if rows:
                # The insert first: on SQLite the transaction holds the write lock before
                # `settle` reads.
                conn.execute(_INSERT_EVENTS, rows)
                settled = settle is not None and settle(conn, rows)

        await documents.insert_with(inserts, also)
        for row in rows:
            OUTBOX_EVENTS.labels(type=row["type"]).inc()
        if not settled:
            _dispatch_publisher().add([row["id"] for row in rows])
        return True


# Built once: an executemany of plain dicts (every column given) on each one-off completion.
_INSERT_EVENTS = insert(OutboxEvent)


def _event_values(name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """An outbox row's values for a Core insert (dispatchable at once: not held)."""
    data = {k: v for k, v in payload.items() if k != "org_id"}
    return {
        "id": new_id("evt"),
        "org_id": str(payload["org_id"]),
        "type": name,
        "api_version": API_VERSION,
        "data": _validated(name, data),
        "target_endpoint_id": None,
        "created_at": utcnow(),  # one per event: the sweep dispatches them in this order
        "dispatched_at": None,
        "held_at": None,
        "witness": None,
    }


def outbox_sink(database: Database) -> EventSink:
    """The outbox as the process's event sink (see `OutboxSink`)."""
    return OutboxSink(database)


def _held_row(name: str, payload: Mapping[str, Any], witness: Witness) -> OutboxEvent:
    data = {k: v for k, v in payload.items() if k != "org_id"}
    now = utcnow()
    return OutboxEvent(
        id=new_id("evt"),
        org_id=str(payload["org_id"]),
        type=name,
        api_version=API_VERSION,
        data=_validated(name, data),
        created_at=now,
        held_at=now,
        witness={
            "collection": witness.collection,
            "doc_id": witness.doc_id,
            "match": dict(witness.match),
        },
    )


def _snapshot(row: OutboxEvent) -> dict[str, Any]:
    """What a released event is re-created from if the reconciler dropped it meanwhile."""
    return {
        "id": row.id,
        "org_id": row.org_id,
        "type": row.type,
        "api_version": row.api_version,
        "data": row.data,
        "created_at": row.created_at,
    }


async def release(database: Database, rows: Sequence[dict[str, Any]]) -> None:
    """The change happened: make the held events dispatchable (and dispatch them).

    An event the reconciler deleted meanwhile (it judged too early, while the change was
    still being made) is written again under its id."""
    ids = [row["id"] for row in rows]
    async with database.session() as session:
        released = await session.scalars(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(ids), OutboxEvent.held_at.is_not(None))
            .values(held_at=None, witness=None)
            .returning(OutboxEvent.id)
            .execution_options(synchronize_session=False)
        )
        present = set(released.all())
        if len(present) < len(ids):  # the reconciler settled some meanwhile: which are left?
            others = [i for i in ids if i not in present]
            query = select(OutboxEvent.id).where(OutboxEvent.id.in_(others))
            present |= set((await session.scalars(query)).all())
        for row in rows:
            if row["id"] not in present:
                session.add(OutboxEvent(**row))
                log.warning("held_event_rewritten", event_id=row["id"], type=row["type"])
        for row in rows:
            OUTBOX_EVENTS.labels(type=row["type"]).inc()
            _dispatch_after_commit(session, row["id"])


async def _drop(database: Database, ids: Sequence[str]) -> None:
    async with database.session() as session:
        await session.execute(
            delete(OutboxEvent).where(OutboxEvent.id.in_(ids), OutboxEvent.held_at.is_not(None))
        )


async def settle_held(
    database: Database, documents: DocumentStore, *, older_than: timedelta, limit: int = 500
) -> tuple[int, int]:
    """Release the held events whose change is in the document store, delete the others;
    only events held longer than `older_than` (their change is over). Returns (released,
    dropped)."""
    cutoff = utcnow() - older_than
    async with database.session() as session:
        held = (
            await session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.held_at.is_not(None), OutboxEvent.held_at <= cutoff)
                .order_by(OutboxEvent.held_at)
                .limit(limit)
            )
        ).all()
        stale = [(row.id, row.org_id, dict(row.witness or {})) for row in held]
    released = dropped = 0
    seen: dict[str, bool] = {}
    for event_id, org_id, witness in stale:
        key = json.dumps([org_id, witness], sort_keys=True, default=str)
        if key not in seen:
            found = await documents.find_one(
                str(witness.get("collection", "")),
                org_id,
                {"_id": witness.get("doc_id"), **dict(witness.get("match") or {})},
            )
            seen[key] = found is not None
        async with database.session() as session:
            if seen[key]:
                result = await session.execute(
                    update(OutboxEvent)
                    .where(OutboxEvent.id == event_id, OutboxEvent.held_at.is_not(None))
                    .values(held_at=None, witness=None)
                )
                if _rowcount(result):
                    released += 1
                    _dispatch_after_commit(session, event_id)
            else:
                result = await session.execute(
                    delete(OutboxEvent).where(
                        OutboxEvent.id == event_id, OutboxEvent.held_at.is_not(None)
                    )
                )
                dropped += _rowcount(result)
    if released or dropped:
        log.warning("held_events_settled", released=released, dropped=dropped)
    return released, dropped


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


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


_dispatcher: Any = None


def _dispatch_publisher() -> Any:
    """The process's dispatch publisher (created on first use: workers import this module)."""
    global _dispatcher
    if _dispatcher is None:
        from vocalis.workers.publish import CoalescingPublisher

        _dispatcher = CoalescingPublisher(DISPATCH_TASK, DISPATCH_MANY_TASK)
    return _dispatcher


def _after_commit(sync: Session) -> None:
    # One message per transaction when the broker keeps up; transactions committed while
    # a message is being sent share the next one (`CoalescingPublisher`).
    ids: list[str] = sync.info.pop(_PENDING, [])
    if ids:
        _dispatch_publisher().add(ids)


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
        .where(
            OutboxEvent.dispatched_at.is_(None),
            OutboxEvent.held_at.is_(None),
            OutboxEvent.created_at <= cutoff,
        )
        .order_by(OutboxEvent.created_at)
        .limit(limit)
    )
    return rows.all()


async def claim(*, session: AsyncSession, event_id: str) -> OutboxEvent | None:
    """Lock an undispatched event for dispatch; None when it is gone or already dispatched."""
    query = select(OutboxEvent).where(
        OutboxEvent.id == event_id,
        OutboxEvent.dispatched_at.is_(None),
        OutboxEvent.held_at.is_(None),  # a held event waits for its change
    )
    if session.get_bind().dialect.name == "postgresql":
        # A concurrent dispatcher (sweep and immediate publish) skips instead of waiting.
        query = query.with_for_update(skip_locked=True)
    row: OutboxEvent | None = await session.scalar(query)
    return row


async def claim_many(*, session: AsyncSession, ids: Sequence[str]) -> Sequence[OutboxEvent]:
    """`claim` for several events at once: those still undispatched (and not held)."""
    query = select(OutboxEvent).where(
        OutboxEvent.id.in_(list(ids)),
        OutboxEvent.dispatched_at.is_(None),
        OutboxEvent.held_at.is_(None),
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return (await session.scalars(query)).all()


async def mark_dispatched(*, session: AsyncSession, event: OutboxEvent) -> None:
    """Record that the event's deliveries exist."""
    event.dispatched_at = utcnow()
    await session.flush()


__all__ = [
    "DISPATCH_TASK",
    "UnknownEventType",
    "claim",
    "claim_many",
    "mark_dispatched",
    "record_event",
    "release",
    "settle_held",
    "undispatched",
]

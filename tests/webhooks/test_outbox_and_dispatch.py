"""The outbox records events with the state change; dispatch fans them out to subscribers."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select, update

from tests.api.conftest import Api
from tests.fixtures.polling import eventually
from vocalis.core.errors import ValidationFailed
from vocalis.events.models import OutboxEvent
from vocalis.events.outbox import UnknownEventType, record_event
from vocalis.events.registry import EVENTS
from vocalis.ports.document_store import DuplicateKey
from vocalis.webhooks import dispatch
from vocalis.webhooks.models import WebhookDelivery

ENDED = {
    "conversation_id": "cnv_1",
    "agent_id": "agt_1",
    "ended_at": "2026-01-01T12:00:00Z",
    "reason": "user_ended",
    "message_count": 4,
}


async def _endpoint(api: Api, headers: dict[str, str], **body: Any) -> str:
    created = await api.client.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/h", **body}, headers=headers
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _queued_tasks(api: Api, queue: str) -> list[dict[str, Any]]:
    client = aioredis.Redis.from_url(api.settings.redis_url)
    try:
        raw = await client.lrange(queue, 0, -1)
    finally:
        await client.aclose()
    return [json.loads(item) for item in raw]


def test_the_registry_names_every_event_with_a_data_schema() -> None:
    assert set(EVENTS) == {
        "conversation.started",
        "conversation.ended",
        "conversation.analyzed",
        "document.ready",
        "document.failed",
        "handoff.requested",
        "webhook.test",
        "vocalis.dtmf",
    }
    for spec in EVENTS.values():
        schema = spec.schema()
        assert schema["type"] == "object" and schema["properties"], spec.name


async def test_an_event_commits_with_the_transaction(sqlite_wh_api: Api) -> None:
    tenant = await sqlite_wh_api.tenant()
    async with sqlite_wh_api.backends.database.session() as session:
        event = await record_event(
            session=session, org_id=tenant.org_id, type="conversation.ended", data=ENDED
        )
    async with sqlite_wh_api.backends.database.session() as session:
        stored = await session.get(OutboxEvent, event.id)
    assert stored is not None
    assert stored.data["conversation_id"] == "cnv_1"
    assert stored.data["ended_at"] == "2026-01-01T12:00:00Z"


async def test_an_event_rolls_back_with_the_transaction_and_is_never_published(
    sqlite_wh_api: Api,
) -> None:
    tenant = await sqlite_wh_api.tenant()
    with pytest.raises(RuntimeError):
        async with sqlite_wh_api.backends.database.session() as session:
            event = await record_event(
                session=session, org_id=tenant.org_id, type="conversation.ended", data=ENDED
            )
            raise RuntimeError("the state change failed")
    async with sqlite_wh_api.backends.database.session() as session:
        assert await session.get(OutboxEvent, event.id) is None
    await asyncio.sleep(0.3)
    assert await _queued_tasks(sqlite_wh_api, "webhooks") == []


async def test_a_committed_event_is_published_for_dispatch_right_away(sqlite_wh_api: Api) -> None:
    tenant = await sqlite_wh_api.tenant()
    async with sqlite_wh_api.backends.database.session() as session:
        event = await record_event(
            session=session, org_id=tenant.org_id, type="conversation.ended", data=ENDED
        )
    messages = await eventually(
        lambda: _queued_tasks(sqlite_wh_api, "webhooks"), bool, timeout=5, what="the message"
    )
    [message] = messages
    assert message["headers"]["task"] == "vocalis.webhooks.dispatch_event"
    assert message["headers"]["argsrepr"] == repr([event.id])


async def test_the_events_of_one_transaction_go_for_dispatch_in_one_message(
    sqlite_wh_api: Api,
) -> None:
    tenant = await sqlite_wh_api.tenant()
    started = {
        "conversation_id": "cnv_1",
        "agent_id": "agt_1",
        "agent_version": 1,
        "channel": "api",
        "started_at": "2026-01-01T11:59:00Z",
        "metadata": {},
    }
    async with sqlite_wh_api.backends.database.session() as session:
        first = await record_event(
            session=session, org_id=tenant.org_id, type="conversation.started", data=started
        )
        second = await record_event(
            session=session, org_id=tenant.org_id, type="conversation.ended", data=ENDED
        )
    messages = await eventually(
        lambda: _queued_tasks(sqlite_wh_api, "webhooks"), bool, timeout=5, what="the message"
    )
    [message] = messages
    assert message["headers"]["task"] == "vocalis.webhooks.dispatch_events"
    assert message["headers"]["argsrepr"] == repr([[first.id, second.id]])


async def test_a_one_off_completions_end_starts_no_analysis(wh_api: Api) -> None:
    tenant = await wh_api.tenant()
    async with wh_api.backends.database.session() as session:
        one_off = await record_event(
            session=session,
            org_id=tenant.org_id,
            type="conversation.ended",
            data={**ENDED, "reason": "completed"},
        )
        kept = await record_event(
            session=session, org_id=tenant.org_id, type="conversation.ended", data=ENDED
        )
    await dispatch.dispatch_event(wh_api.backends, one_off.id)
    await asyncio.sleep(0.3)
    assert await _queued_tasks(wh_api, "analysis") == []
    await dispatch.dispatch_event(wh_api.backends, kept.id)
    [analysis] = await eventually(
        lambda: _queued_tasks(wh_api, "analysis"), bool, timeout=5, what="the analysis"
    )
    assert analysis["headers"]["task"] == "vocalis.conversations.analysis.analyze"


async def test_unknown_event_types_and_invalid_data_are_refused(sqlite_wh_api: Api) -> None:
    async with sqlite_wh_api.backends.database.session() as session:
        with pytest.raises(UnknownEventType):
            await record_event(
                session=session, org_id="org_x", type="conversation.exploded", data={}
            )
        with pytest.raises(ValidationFailed):
            await record_event(
                session=session,
                org_id="org_x",
                type="conversation.ended",
                data={**ENDED, "message_count": -1},
            )


async def test_dispatch_creates_one_delivery_per_subscribed_enabled_endpoint(wh_api: Api) -> None:
    tenant = await wh_api.tenant()
    other = await wh_api.tenant("Other")
    every = await _endpoint(wh_api, tenant.headers)
    ended_only = await _endpoint(wh_api, tenant.headers, event_types=["conversation.ended"])
    await _endpoint(wh_api, tenant.headers, event_types=["document.ready"])
    await _endpoint(wh_api, tenant.headers, enabled=False)
    await _endpoint(wh_api, other.headers)  # another organisation's
    async with wh_api.backends.database.session() as session:
        event = await record_event(
            session=session, org_id=tenant.org_id, type="conversation.ended", data=ENDED
        )
    await dispatch.dispatch_event(wh_api.backends, event.id)
    async with wh_api.backends.database.session() as session:
        deliveries = (
            await session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.event_id == event.id)
            )
        ).all()
        stored = await session.get(OutboxEvent, event.id)
    assert {d.endpoint_id for d in deliveries} == {every, ended_only}
    assert stored is not None and stored.dispatched_at is not None


async def test_dispatching_an_event_twice_creates_nothing_more(wh_api: Api) -> None:
    tenant = await wh_api.tenant()
    await _endpoint(wh_api, tenant.headers)
    async with wh_api.backends.database.session() as session:
        event = await record_event(
            session=session, org_id=tenant.org_id, type="conversation.ended", data=ENDED
        )
    first, second = await asyncio.gather(
        dispatch.dispatch_event(wh_api.backends, event.id),
        dispatch.dispatch_event(wh_api.backends, event.id),
    )
    assert len(first) + len(second) == 1


async def test_a_test_event_goes_only_to_its_endpoint(sqlite_wh_api: Api) -> None:
    tenant = await sqlite_wh_api.tenant()
    target = await _endpoint(sqlite_wh_api, tenant.headers)
    await _endpoint(sqlite_wh_api, tenant.headers)
    sent = await sqlite_wh_api.client.post(f"/v1/webhooks/{target}/test", headers=tenant.headers)
    assert sent.status_code == 202
    ids = await dispatch.dispatch_event(sqlite_wh_api.backends, sent.json()["id"])
    async with sqlite_wh_api.backends.database.session() as session:
        [delivery] = [await session.get(WebhookDelivery, i) for i in ids]
    assert delivery is not None and delivery.endpoint_id == target


async def test_the_sweep_dispatches_stranded_events_and_requeues_lost_deliveries(
    sqlite_wh_api: Api,
) -> None:
    tenant = await sqlite_wh_api.tenant()
    await _endpoint(sqlite_wh_api, tenant.headers)
    async with sqlite_wh_api.backends.database.session() as session:
        event = await record_event(
            session=session, org_id=tenant.org_id, type="conversation.ended", data=ENDED
        )
        event.created_at = datetime.now(UTC) - timedelta(minutes=1)  # its publish was lost
    report = await dispatch.sweep(sqlite_wh_api.backends)
    assert report.events_dispatched == 1
    assert report.deliveries_enqueued == 0  # just enqueued by the dispatch itself
    async with sqlite_wh_api.backends.database.session() as session:
        await session.execute(
            update(WebhookDelivery).values(enqueued_at=datetime.now(UTC) - timedelta(hours=1))
        )
    again = await dispatch.sweep(sqlite_wh_api.backends)
    assert again.events_dispatched == 0
    assert again.deliveries_enqueued == 1


async def test_events_and_documents_in_the_same_database_are_one_transaction(
    sqlite_wh_api: Api,
) -> None:
    """With the JSON-table document store the outbox writes a one-off conversation's events
    and documents together: all of them, dispatched in one message, or none."""
    from vocalis.events.outbox import OutboxSink

    api = sqlite_wh_api
    tenant = await api.tenant()
    sink = api.backends.events
    assert isinstance(sink, OutboxSink)
    ended = {"org_id": tenant.org_id, **ENDED, "conversation_id": "cnv_tx1"}
    doc = {"_id": "cnv_tx1", "agent_id": "agt_1", "status": "ended"}
    message = {"_id": "msg_tx1", "conversation_id": "cnv_tx1", "sequence": 1}
    inserts = [("messages", tenant.org_id, [message]), ("conversations", tenant.org_id, [doc])]
    assert await sink.record_with_documents(
        [("conversation.ended", ended)], api.backends.documents, inserts
    )
    assert await api.backends.documents.get("conversations", tenant.org_id, "cnv_tx1")
    assert await api.backends.documents.get("messages", tenant.org_id, "msg_tx1")
    async with api.backends.database.session() as session:
        [stored] = (await session.scalars(select(OutboxEvent))).all()
    assert stored.held_at is None and stored.data["conversation_id"] == "cnv_tx1"
    messages = await eventually(
        lambda: _queued_tasks(api, "webhooks"), bool, timeout=5, what="the message"
    )
    assert [m["headers"]["argsrepr"] for m in messages] == [repr([stored.id])]

    # A document that exists already: nothing of the second write is stored.
    again = [("messages", tenant.org_id, [{**message, "_id": "msg_tx2"}]), *inserts[1:]]
    with pytest.raises(DuplicateKey):
        await sink.record_with_documents(
            [("conversation.ended", ended)], api.backends.documents, again
        )
    assert await api.backends.documents.get("messages", tenant.org_id, "msg_tx2") is None
    async with api.backends.database.session() as session:
        assert len((await session.scalars(select(OutboxEvent))).all()) == 1


async def _record_one_off(api: Api, org_id: str, conversation_id: str, reason: str) -> OutboxEvent:
    """A one-off completion's write (`OneOffTurn._store`): its events and documents in one
    transaction, settled there when nothing would be dispatched."""
    from vocalis.events.outbox import OutboxSink

    sink = api.backends.events
    assert isinstance(sink, OutboxSink)
    ended = {"org_id": org_id, **ENDED, "conversation_id": conversation_id, "reason": reason}
    doc = {"_id": conversation_id, "agent_id": "agt_1", "status": "ended"}
    assert await sink.record_with_documents(
        [("conversation.ended", ended)],
        api.backends.documents,
        [("conversations", org_id, [doc])],
        settle=dispatch.settle_undeliverable,
    )
    async with api.backends.database.session() as session:
        rows = (await session.scalars(select(OutboxEvent))).all()
    [stored] = [r for r in rows if r.data["conversation_id"] == conversation_id]
    return stored


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The event ids handed to the dispatch publisher (nothing is sent)."""
    from vocalis.events import outbox

    sent: list[list[str]] = []

    class Recorder:
        def add(self, ids: list[str]) -> None:
            sent.append(list(ids))

    monkeypatch.setattr(outbox, "_dispatch_publisher", Recorder)
    return sent


async def test_events_nothing_would_be_dispatched_to_are_settled_in_their_transaction(
    sqlite_wh_api: Api, published: list[list[str]]
) -> None:
    """No enabled endpoint in the organisation (one disabled, one of another organisation)
    and no consumer (a one-off conversation ends `completed`): the events are marked
    dispatched where they are written, and no dispatch task is published."""
    api = sqlite_wh_api
    tenant, other = await api.tenant(), await api.tenant("Other")
    await _endpoint(api, tenant.headers, enabled=False)
    await _endpoint(api, other.headers)
    stored = await _record_one_off(api, tenant.org_id, "cnv_s1", "completed")
    assert stored.dispatched_at is not None and stored.held_at is None
    assert published == []
    async with api.backends.database.session() as session:
        assert (await session.scalars(select(WebhookDelivery))).all() == []
    assert (await dispatch.sweep(api.backends)).events_dispatched == 0


async def test_events_an_endpoint_or_a_consumer_wants_are_dispatched_by_the_worker(
    sqlite_wh_api: Api, published: list[list[str]]
) -> None:
    api = sqlite_wh_api
    tenant, analysed = await api.tenant(), await api.tenant("Analysed")
    # `user_ended` is analysed (a consumer wants it), even with no endpoint.
    wanted = await _record_one_off(api, analysed.org_id, "cnv_s2", "user_ended")
    assert wanted.dispatched_at is None
    # An enabled endpoint of the organisation: dispatched as before, one delivery.
    endpoint = await _endpoint(api, tenant.headers)
    subscribed = await _record_one_off(api, tenant.org_id, "cnv_s3", "completed")
    assert subscribed.dispatched_at is None
    assert published == [[wanted.id], [subscribed.id]]
    await dispatch.dispatch_events(api.backends, [subscribed.id])
    async with api.backends.database.session() as session:
        [delivery] = (await session.scalars(select(WebhookDelivery))).all()
    assert (delivery.event_id, delivery.endpoint_id) == (subscribed.id, endpoint)

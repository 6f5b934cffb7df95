"""No conversation event is lost between the document store and the outbox (issue 15).

A conversation changes in the document store; its event goes to the outbox in the
relational database. The events are written first, held, with a witness (the document
that shows the change); the change is made; the events are released, or dropped when the
change did not happen. Faults are injected at each point — the process "dies" (an
exception nothing catches, like a kill: no code after it runs) or the database fails —
and the outbox sweep's reconciler (`settle_held`) must then deliver each event whose
change happened exactly once, and none whose change did not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from tests.agents_api.harness import AgentApi
from tests.api.conftest import Tenant
from vocalis.conversations import service as conversations
from vocalis.conversations import store
from vocalis.core.ids import new_id
from vocalis.events import outbox
from vocalis.events.models import OutboxEvent
from vocalis.webhooks import dispatch
from vocalis.webhooks.models import WebhookDelivery, WebhookEndpoint
from vocalis.workers import publish

NOW = timedelta(0)  # settle whatever is held, however recent


class Crash(BaseException):
    """The process dies here: like SIGKILL, nothing after it runs (no `except Exception`)."""


@pytest.fixture(params=["sqlite_agent_api", "mongo_agent_api"])
def api(request: pytest.FixtureRequest) -> AgentApi:
    """Conversations in the JSON table and in MongoDB (the witness lookups differ)."""
    running: AgentApi = request.getfixturevalue(request.param)
    publish.configure(running.settings)  # after-commit publishes: the test's Redis
    running.backends.events = outbox.outbox_sink(running.backends.database)
    return running


async def _setup(api: AgentApi) -> tuple[Tenant, str, str]:
    tenant = await api.tenant("Acme")
    agent = await api.agent(tenant)
    endpoint_id = new_id("whe")
    endpoint = WebhookEndpoint(
        id=endpoint_id,
        org_id=tenant.org_id,
        url="https://hooks.example.com/vocalis",  # never called: deliveries are only queued
        event_types=[],
        secret_encrypted="unused",
    )
    async with api.backends.database.session() as session:
        session.add(endpoint)
    return tenant, str(agent["id"]), endpoint_id


async def _start(api: AgentApi, tenant: Tenant, agent_id: str) -> str:
    doc = await conversations.start_conversation(
        backends=api.backends, runtime=api.runtime, org_id=tenant.org_id, agent_id=agent_id
    )
    return str(doc["_id"])


async def _end(api: AgentApi, tenant: Tenant, conversation_id: str) -> dict[str, Any]:
    return await conversations.end_conversation(
        backends=api.backends,
        runtime=api.runtime,
        org_id=tenant.org_id,
        conversation_id=conversation_id,
        reason="user_ended",
    )


async def _events(api: AgentApi, conversation_id: str, type: str) -> list[OutboxEvent]:
    async with api.backends.database.session() as session:
        rows = (await session.scalars(select(OutboxEvent).where(OutboxEvent.type == type))).all()
    return [row for row in rows if row.data.get("conversation_id") == conversation_id]


async def _delivered(api: AgentApi, events: list[OutboxEvent]) -> list[WebhookDelivery]:
    """Dispatch each event twice (a sweep racing the immediate publish): the deliveries."""
    for event in events:
        await dispatch.dispatch_event(api.backends, event.id)
        await dispatch.dispatch_event(api.backends, event.id)
    async with api.backends.database.session() as session:
        rows = await session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.event_id.in_([e.id for e in events]))
        )
        return list(rows.all())


@asynccontextmanager
async def _patched(obj: Any, name: str, replacement: Any) -> AsyncIterator[None]:
    original = getattr(obj, name)
    setattr(obj, name, replacement)
    try:
        yield
    finally:
        setattr(obj, name, original)


def _after(
    original: Callable[..., Awaitable[Any]], then: Callable[[], None]
) -> Callable[..., Awaitable[Any]]:
    """`original`, then `then()` (which may raise, as a crash right after the write)."""

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        then()
        return result

    return wrapped


def _crash() -> None:
    raise Crash


async def test_an_event_written_with_its_change_is_released_at_once(api: AgentApi) -> None:
    tenant, agent_id, _ = await _setup(api)
    conversation_id = await _start(api, tenant, agent_id)
    await _end(api, tenant, conversation_id)
    for type in ("conversation.started", "conversation.ended"):
        (event,) = await _events(api, conversation_id, type)
        assert event.held_at is None and event.witness is None
    assert await outbox.settle_held(
        api.backends.database, api.backends.documents, older_than=NOW
    ) == (0, 0)


async def test_death_after_the_document_write_still_delivers_the_event_once(
    api: AgentApi,
) -> None:
    tenant, agent_id, endpoint_id = await _setup(api)
    conversation_id = await _start(api, tenant, agent_id)
    documents = api.backends.documents
    async with _patched(documents, "update_one", _after(documents.update_one, _crash)):
        with pytest.raises(Crash):
            await _end(api, tenant, conversation_id)
    doc = await store.get_conversation(documents, tenant.org_id, conversation_id)
    assert doc is not None and doc["status"] == "ended"  # the change is there ...
    (held,) = await _events(api, conversation_id, "conversation.ended")
    assert held.held_at is not None  # ... and its event, held: never dispatched as is
    assert await dispatch.dispatch_event(api.backends, held.id) == []

    assert await outbox.settle_held(api.backends.database, documents, older_than=NOW) == (1, 0)
    assert await outbox.settle_held(api.backends.database, documents, older_than=NOW) == (0, 0)
    (event,) = await _events(api, conversation_id, "conversation.ended")
    assert event.id == held.id and event.held_at is None
    assert datetime.fromisoformat(event.data["ended_at"]) == datetime.fromisoformat(doc["ended_at"])
    assert event.data["reason"] == "user_ended"
    (delivery,) = await _delivered(api, [event])
    assert delivery.endpoint_id == endpoint_id


async def test_death_before_the_release_of_a_new_conversation_still_delivers_it(
    api: AgentApi,
) -> None:
    tenant, agent_id, _ = await _setup(api)

    async def dies(*_: Any, **__: Any) -> None:
        raise Crash

    async with _patched(outbox, "release", dies):
        with pytest.raises(Crash):
            await _start(api, tenant, agent_id)
    async with api.backends.database.session() as session:
        (held,) = (
            await session.scalars(
                select(OutboxEvent).where(
                    OutboxEvent.org_id == tenant.org_id, OutboxEvent.type == "conversation.started"
                )
            )
        ).all()
    assert held.held_at is not None
    conversation_id = held.data["conversation_id"]
    assert await store.get_conversation(api.backends.documents, tenant.org_id, conversation_id)
    assert await outbox.settle_held(
        api.backends.database, api.backends.documents, older_than=NOW
    ) == (1, 0)
    (event,) = await _events(api, conversation_id, "conversation.started")
    assert len(await _delivered(api, [event])) == 1


async def test_a_database_failure_after_the_document_write_loses_nothing(api: AgentApi) -> None:
    tenant, agent_id, _ = await _setup(api)
    conversation_id = await _start(api, tenant, agent_id)
    database = api.backends.database
    down = {"now": False}
    original_session = database.session

    @asynccontextmanager
    async def session() -> AsyncIterator[Any]:
        if down["now"]:
            raise OperationalError("UPDATE outbox_events", {}, Exception("database is gone"))
        async with original_session() as s:
            yield s

    def database_fails() -> None:
        down["now"] = True

    documents = api.backends.documents
    async with (
        _patched(documents, "update_one", _after(documents.update_one, database_fails)),
        _patched(database, "session", session),
    ):
        ended = await _end(api, tenant, conversation_id)  # the end itself succeeded
    assert ended["status"] == "ended"
    (held,) = await _events(api, conversation_id, "conversation.ended")
    assert held.held_at is not None

    assert await outbox.settle_held(database, documents, older_than=NOW) == (1, 0)
    (event,) = await _events(api, conversation_id, "conversation.ended")
    assert len(await _delivered(api, [event])) == 1


async def test_death_before_the_document_write_sends_no_event_for_it(api: AgentApi) -> None:
    tenant, agent_id, _ = await _setup(api)
    conversation_id = await _start(api, tenant, agent_id)
    documents = api.backends.documents

    async def dies(*_: Any, **__: Any) -> bool:
        raise Crash

    async with _patched(documents, "update_one", dies):
        with pytest.raises(Crash):
            await _end(api, tenant, conversation_id)
    doc = await store.get_conversation(documents, tenant.org_id, conversation_id)
    assert doc is not None and doc["status"] == "active"
    assert await outbox.settle_held(api.backends.database, documents, older_than=NOW) == (0, 1)
    assert await _events(api, conversation_id, "conversation.ended") == []

    await _end(api, tenant, conversation_id)  # ended for real later: exactly one event
    (event,) = await _events(api, conversation_id, "conversation.ended")
    assert event.held_at is None


async def test_a_reconciler_that_runs_too_early_cannot_lose_the_event(api: AgentApi) -> None:
    """The sweep settles while the document write is still in flight (a slow store): it
    sees no change and drops the held event; the writer then releases it, writing it again
    under the same id."""
    tenant, agent_id, _ = await _setup(api)
    conversation_id = await _start(api, tenant, agent_id)
    documents = api.backends.documents
    original = documents.update_one
    dropped: list[tuple[int, int]] = []

    async def slow(*args: Any, **kwargs: Any) -> bool:
        dropped.append(await outbox.settle_held(api.backends.database, documents, older_than=NOW))
        return bool(await original(*args, **kwargs))

    async with _patched(documents, "update_one", slow):
        await _end(api, tenant, conversation_id)
    assert dropped == [(0, 1)]
    (event,) = await _events(api, conversation_id, "conversation.ended")
    assert event.held_at is None
    assert len(await _delivered(api, [event])) == 1


async def test_the_database_down_before_anything_refuses_the_change(api: AgentApi) -> None:
    """No event can be written: the conversation is not ended either (no change without
    its event); the caller gets the error and may retry."""
    tenant, agent_id, _ = await _setup(api)
    conversation_id = await _start(api, tenant, agent_id)

    @asynccontextmanager
    async def session() -> AsyncIterator[Any]:
        raise OperationalError("INSERT INTO outbox_events", {}, Exception("database is gone"))
        yield  # pragma: no cover

    async with _patched(api.backends.database, "session", session):
        with pytest.raises(OperationalError):
            await _end(api, tenant, conversation_id)
    doc = await store.get_conversation(api.backends.documents, tenant.org_id, conversation_id)
    assert doc is not None and doc["status"] == "active"


async def test_a_handoff_is_held_with_its_document_change(api: AgentApi) -> None:
    tenant, agent_id, _ = await _setup(api)
    conversation_id = await _start(api, tenant, agent_id)
    documents = api.backends.documents
    turn = conversations.Turn(
        backends=api.backends,
        runtime=api.runtime,
        org_id=tenant.org_id,
        conversation=await conversations.get_conversation(
            api.backends, org_id=tenant.org_id, conversation_id=conversation_id
        ),
        config=None,  # type: ignore[arg-type]  # not used by the event sink
        user_message={},
        lock=None,  # type: ignore[arg-type]
    )
    payload = {
        "org_id": tenant.org_id,
        "conversation_id": conversation_id,
        "agent_id": agent_id,
        "reason": "asked for a person",
    }
    async with _patched(documents, "update_one", _after(documents.update_one, _crash)):
        with pytest.raises(Crash):
            await turn._sink("handoff.requested", payload)
    doc = await store.get_conversation(documents, tenant.org_id, conversation_id)
    assert doc is not None and doc["handoff"]["reason"] == "asked for a person"
    assert await outbox.settle_held(api.backends.database, documents, older_than=NOW) == (1, 0)
    (event,) = await _events(api, conversation_id, "handoff.requested")
    requested_at = datetime.fromisoformat(event.data["requested_at"])
    assert requested_at == datetime.fromisoformat(doc["handoff"]["requested_at"])
    assert len(await _delivered(api, [event])) == 1

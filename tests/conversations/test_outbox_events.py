"""Lifecycle events reach the transactional outbox (the webhooks' source) by default."""

from __future__ import annotations

from sqlalchemy import select

from tests.agents_api.harness import AgentApi
from vocalis.events.models import OutboxEvent
from vocalis.events.outbox import outbox_sink
from vocalis.workers import publish


async def test_conversation_started_and_ended_are_recorded_in_the_outbox(
    sqlite_agent_api: AgentApi,
) -> None:
    api = sqlite_agent_api
    publish.configure(api.settings)  # the after-commit publish goes to the test's Redis
    api.backends.events = outbox_sink(api.backends.database)  # back to the outbox
    acme = await api.tenant("Acme")
    agent = await api.agent(acme)
    conversation = await api.conversation(acme, agent["id"])
    await api.client.post(f"/v1/conversations/{conversation['id']}/end", headers=acme.headers)
    async with api.backends.database.session() as session:
        rows = (
            await session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.org_id == acme.org_id)
                .order_by(OutboxEvent.created_at)
            )
        ).all()
    assert [row.type for row in rows] == ["conversation.started", "conversation.ended"]
    assert {row.data["conversation_id"] for row in rows} == {conversation["id"]}
    assert rows[1].data["reason"] == "user_ended"

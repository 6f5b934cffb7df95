"""A realtime conversation ends by itself — its client left, it idled, it ran too long — with
`conversation.ended` carrying the reason, and the analysis that event starts."""

from __future__ import annotations

import asyncio
from typing import Any

import websockets
from sqlalchemy import select

from tests.agents_api.harness import LiveServer
from tests.fixtures.polling import eventually
from tests.realtime.client import TEXT_ONLY, answer, connect, create_agent, recv, say, update
from tests.realtime.conftest import DISCONNECT_GRACE_S
from vocalis.conversations import analysis
from vocalis.conversations.tasks import ANALYZE_TASK
from vocalis.events.models import OutboxEvent
from vocalis.webhooks.dispatch import EVENT_CONSUMERS


async def _ended(live: LiveServer, conversation_id: str) -> list[dict[str, Any]]:
    await asyncio.sleep(0)
    return [
        e
        for e in live.events.named("conversation.ended")
        if e["conversation_id"] == conversation_id
    ]


async def _ended_with(live: LiveServer, conversation_id: str, timeout: float = 15) -> str:
    [ended] = await eventually(
        lambda: _ended(live, conversation_id), bool, timeout=timeout, what="conversation.ended"
    )
    return str(ended["reason"])


async def _analysed(live: LiveServer, conversation_id: str) -> dict[str, Any]:
    """What the consumer of `conversation.ended` does: analyse, emit `conversation.analyzed`."""
    assert ANALYZE_TASK in [c.task for c in EVENT_CONSUMERS["conversation.ended"]]
    org_id = live.tenant.org_id
    result = await analysis.analyze_conversation(
        live.backends, org_id=org_id, conversation_id=conversation_id
    )
    assert result is not None
    async with live.backends.database.session() as session:
        rows = (
            await session.scalars(
                select(OutboxEvent).where(
                    OutboxEvent.org_id == org_id, OutboxEvent.type == "conversation.analyzed"
                )
            )
        ).all()
    [event] = [row for row in rows if row.data["conversation_id"] == conversation_id]
    return dict(event.data)


async def _talk(ws: Any) -> str:
    conversation_id = str((await recv(ws))["vocalis"]["conversation_id"])
    await update(ws, TEXT_ONLY)
    await say(ws, "My modem keeps dropping the line")
    await answer(ws)
    return conversation_id


async def test_a_client_that_disconnects_ends_its_conversation_after_the_grace_period(
    lifecycle_server: LiveServer,
) -> None:
    agent_id = await create_agent(lifecycle_server)
    async with connect(lifecycle_server, f"model={agent_id}") as ws:
        conversation_id = await _talk(ws)
    left_at = asyncio.get_running_loop().time()
    assert await _ended_with(lifecycle_server, conversation_id) == "disconnected"
    assert asyncio.get_running_loop().time() - left_at >= DISCONNECT_GRACE_S * 0.9
    analyzed = await _analysed(lifecycle_server, conversation_id)
    assert analyzed["outcome"] in ("resolved", "escalated", "abandoned")


async def test_a_conversation_resumed_within_the_grace_period_goes_on(
    lifecycle_server: LiveServer,
) -> None:
    agent_id = await create_agent(lifecycle_server)
    async with connect(lifecycle_server, f"model={agent_id}") as ws:
        conversation_id = await _talk(ws)
    async with connect(lifecycle_server, f"conversation_id={conversation_id}") as ws:
        assert (await recv(ws))["vocalis"]["resumed"] is True
        await asyncio.sleep(DISCONNECT_GRACE_S * 2)
        await update(ws, TEXT_ONLY)
        await say(ws, "Are you still there?")
        assert (await answer(ws))[-1]["response"]["status"] == "completed"
    assert not await _ended(lifecycle_server, conversation_id)


async def test_an_idle_conversation_ends_with_reason_timeout(lifecycle_server: LiveServer) -> None:
    agent_id = await create_agent(lifecycle_server, limits={"idle_timeout_s": 1})
    async with connect(lifecycle_server, f"model={agent_id}") as ws:
        conversation_id = await _talk(ws)
        events = []
        async for message in ws:  # the server ends the conversation, then closes the socket
            events.append(message)
        assert ws.close_code == 1000
    assert '"vocalis.conversation.ended"' in events[-1] and '"timeout"' in events[-1]
    assert await _ended_with(lifecycle_server, conversation_id) == "timeout"
    analyzed = await _analysed(lifecycle_server, conversation_id)
    assert analyzed["conversation_id"] == conversation_id


async def test_a_conversation_ends_at_its_maximum_duration(lifecycle_server: LiveServer) -> None:
    agent_id = await create_agent(lifecycle_server, limits={"max_duration_s": 2})
    async with connect(lifecycle_server, f"model={agent_id}") as ws:
        conversation_id = await _talk(ws)
        closing = [e async for e in _until_closed(ws)]
    assert any('"max_duration"' in e for e in closing)
    assert await _ended_with(lifecycle_server, conversation_id) == "max_duration"


async def _until_closed(ws: Any) -> Any:
    try:
        async for message in ws:
            yield message
    except websockets.ConnectionClosed:
        return


async def test_a_conversation_ended_over_rest_closes_its_session(
    lifecycle_server: LiveServer,
) -> None:
    agent_id = await create_agent(lifecycle_server)
    async with connect(lifecycle_server, f"model={agent_id}") as ws:
        conversation_id = await _talk(ws)
        async with lifecycle_server.client() as http:
            ended = await http.post(
                f"/v1/conversations/{conversation_id}/end", json={"reason": "user_ended"}
            )
            assert ended.status_code == 200, ended.text
        closing = [e async for e in _until_closed(ws)]
    assert any('"user_ended"' in e for e in closing)
    assert await _ended_with(lifecycle_server, conversation_id) == "user_ended"

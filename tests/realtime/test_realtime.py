"""`WS /v1/realtime`: the text part of the OpenAI Realtime protocol over an agent."""

from __future__ import annotations

import asyncio
import json
import typing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai
import pytest
import websockets
from openai.types.realtime import RealtimeServerEvent
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from tests.agents_api.harness import LiveServer
from vocalis.agents.runtime import get_runtime
from vocalis.conversations.store import TurnLock
from vocalis.ports.llm import ChatDelta

RESPONSE_EVENTS = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]


async def _agent(live: LiveServer, **fields: Any) -> str:
    body = {"name": "Support", "instructions": "", "knowledge_base_ids": []} | fields
    async with live.client() as http:
        response = await http.post("/v1/agents", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


@asynccontextmanager
async def _connect(
    live: LiveServer, query: str, key: str | None = None
) -> AsyncIterator[ClientConnection]:
    url = live.base_url.replace("http://", "ws://") + f"/v1/realtime?{query}"
    headers = {"Authorization": f"Bearer {key or live.tenant.key}"}
    async with websockets.connect(url, additional_headers=headers) as ws:
        yield ws


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), timeout=10)))


async def _until(ws: ClientConnection, event_type: str) -> list[dict[str, Any]]:
    """Events received up to and including the first one of `event_type`."""
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["type"] != event_type:
        seen.append(await _recv(ws))
    return seen


async def _text_only(ws: ClientConnection) -> None:
    """Declare a text-only client (a GA session answers with audio by default)."""
    update = {"type": "realtime", "output_modalities": ["text"]}
    await ws.send(json.dumps({"type": "session.update", "session": update}))
    await _until(ws, "session.updated")


async def _say(ws: ClientConnection, text: str) -> None:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))


def _types(events: list[dict[str, Any]]) -> list[str]:
    collapsed: list[str] = []
    for event in events:
        if not collapsed or collapsed[-1] != event["type"]:
            collapsed.append(event["type"])
    return collapsed


async def test_the_openai_sdk_realtime_client_completes_a_text_turn(
    live_server: LiveServer,
) -> None:
    agent_id = await _agent(live_server)
    client = openai.AsyncOpenAI(
        api_key=live_server.tenant.key, base_url=f"{live_server.base_url}/v1"
    )
    async with client.realtime.connect(model=agent_id) as connection:
        created = await connection.recv()
        assert created.type == "session.created"
        await connection.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        assert (await connection.recv()).type == "session.updated"
        await connection.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Hello"}],
            }
        )
        text: list[str] = []
        done = None
        await connection.response.create()
        async for event in connection:
            if event.type == "response.output_text.delta":
                text.append(event.delta)
            elif event.type == "response.done":
                done = event
                break
    assert done is not None
    assert done.response.status == "completed"
    assert "".join(text) == "Hello! How can I help you today?"
    usage = done.response.usage
    assert usage is not None
    assert (usage.total_tokens or 0) > 0
    extras = done.model_extra or {}
    assert extras["vocalis"]["latency_ms"]["total"] > 0
    assert extras["vocalis"]["citations"] == []


async def test_a_turn_produces_the_ga_response_events_in_order(live_server: LiveServer) -> None:
    agent_id = await _agent(live_server)
    async with _connect(live_server, f"model={agent_id}") as ws:
        session = await _recv(ws)
        assert session["type"] == "session.created"
        assert session["session"]["model"] == agent_id
        conversation_id = session["vocalis"]["conversation_id"]
        await _text_only(ws)
        await _say(ws, "Hello")
        added = await _until(ws, "conversation.item.done")
        assert _types(added) == ["conversation.item.added", "conversation.item.done"]
        await ws.send(json.dumps({"type": "response.create"}))
        events = await _until(ws, "response.done")
    assert _types(events) == RESPONSE_EVENTS
    done = events[-1]
    [item] = done["response"]["output"]
    assert item["type"] == "message" and item["status"] == "completed"
    assert item["content"][0] == {"type": "output_text", "text": "Hello! How can I help you today?"}
    text_done = next(e for e in events if e["type"] == "response.output_text.done")
    assert text_done["text"] == item["content"][0]["text"]
    assert done["vocalis"]["message_id"] == item["id"]
    async with live_server.client() as http:
        transcript = (await http.get(f"/v1/conversations/{conversation_id}")).json()
    assert transcript["channel"] == "voice"
    assert [m["id"] for m in transcript["messages"]] == [added[0]["item"]["id"], item["id"]]


async def test_malformed_frames_get_an_error_and_the_session_stays_usable(
    live_server: LiveServer,
) -> None:
    agent_id = await _agent(live_server)
    async with _connect(live_server, f"model={agent_id}") as ws:
        await _recv(ws)  # session.created
        await _text_only(ws)
        await ws.send("{not json")
        assert (await _recv(ws))["error"]["code"] == "invalid_json"
        await ws.send(json.dumps(["not", "an", "object"]))
        assert (await _recv(ws))["error"]["code"] == "invalid_event"
        await ws.send(json.dumps({"type": "no.such.event", "event_id": "evt_1"}))
        unknown = await _recv(ws)
        assert unknown["error"]["code"] == "unknown_event"
        assert unknown["error"]["event_id"] == "evt_1"
        audio = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_audio", "audio": "AA=="}],
        }
        await ws.send(json.dumps({"type": "conversation.item.create", "item": audio}))
        invalid = await _recv(ws)
        assert invalid["type"] == "error"
        assert invalid["error"]["code"] == "invalid_value"
        assert "content.0" in invalid["error"]["param"]
        await ws.send(b"\x00\x01binary")
        assert (await _recv(ws))["error"]["code"] == "unsupported_frame"
        await ws.send(json.dumps({"type": "response.create"}))
        assert (await _recv(ws))["error"]["code"] == "no_input"
        await _say(ws, "Hello")
        await ws.send(json.dumps({"type": "response.create"}))
        events = await _until(ws, "response.done")
    assert events[-1]["response"]["status"] == "completed"


async def test_a_deeply_nested_or_nul_frame_gets_an_error_and_the_session_stays_usable(
    live_server: LiveServer,
) -> None:
    """A frame nested 100,000 deep used to raise RecursionError in the parser and drop
    the socket without a close frame (issue 15)."""
    agent_id = await _agent(live_server)
    async with _connect(live_server, f"model={agent_id}") as ws:
        await _recv(ws)  # session.created
        await _text_only(ws)
        await ws.send(
            '{"type": "session.update", "session": ' + "[" * 100_000 + "]" * 100_000 + "}"
        )
        deep = await _recv(ws)
        assert deep["type"] == "error" and deep["error"]["code"] == "invalid_value", deep
        assert "nested deeper" in deep["error"]["message"]
        nested = {"type": "session.update", "session": {"metadata": _nest(200)}}
        await ws.send(json.dumps(nested))
        assert (await _recv(ws))["error"]["code"] == "invalid_value"
        await ws.send(
            json.dumps({"type": "session.update", "session": {"instructions": "a\u0000"}})
        )
        nul = await _recv(ws)
        assert nul["error"]["code"] == "invalid_value"
        assert nul["error"]["param"] == "session.instructions"
        await _say(ws, "Hello")
        await ws.send(json.dumps({"type": "response.create"}))
        events = await _until(ws, "response.done")
    assert events[-1]["response"]["status"] == "completed"


def _nest(depth: int) -> dict[str, object]:
    node: dict[str, object] = {}
    for _ in range(depth):
        node = {"a": node}
    return node


async def test_a_tool_call_is_reported_with_its_arguments(live_server: LiveServer) -> None:
    agent_id = await _agent(live_server, tools=[{"type": "transfer_to_human"}])
    async with _connect(live_server, f"agent_id={agent_id}") as ws:
        await _recv(ws)
        await _text_only(ws)
        await _say(ws, "I want to talk to a human")
        await _until(ws, "conversation.item.done")
        await ws.send(json.dumps({"type": "response.create"}))
        events = await _until(ws, "response.done")
    call = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert call["name"] == "transfer_to_human"
    assert json.loads(call["arguments"])["reason"]
    assert any(e["type"] == "vocalis.tool.result" for e in events)
    assert any(e["type"] == "vocalis.handoff.requested" for e in events)
    output = events[-1]["response"]["output"]
    assert [o["type"] for o in output] == ["message", "function_call"]
    assert events[-1]["vocalis"]["handoff"] is True
    assert live_server.events.named("handoff.requested")


async def test_a_field_outside_the_ga_session_is_reported_and_the_rest_applied(
    live_server: LiveServer,
) -> None:
    agent_id = await _agent(live_server)
    async with _connect(live_server, f"model={agent_id}") as ws:
        await _recv(ws)
        update = {"type": "realtime", "max_output_tokens": 200, "temperature": 0.2}
        await ws.send(json.dumps({"type": "session.update", "session": update}))
        refused = await _recv(ws)
        assert refused["error"]["code"] == "unsupported_session_field"
        assert refused["error"]["param"] == "session.temperature"
        updated = await _recv(ws)
    assert updated["type"] == "session.updated"
    assert updated["session"]["max_output_tokens"] == 200
    assert "temperature" not in updated["session"]


async def test_cancel_without_a_response_in_progress_is_an_error(live_server: LiveServer) -> None:
    agent_id = await _agent(live_server)
    async with _connect(live_server, f"model={agent_id}") as ws:
        await _recv(ws)
        await ws.send(json.dumps({"type": "response.cancel"}))
        assert (await _recv(ws))["error"]["code"] == "response_cancel_not_active"


async def test_a_response_while_the_conversation_is_busy_is_an_error(
    live_server: LiveServer,
) -> None:
    agent_id = await _agent(live_server)
    async with _connect(live_server, f"model={agent_id}") as ws:
        conversation_id = (await _recv(ws))["vocalis"]["conversation_id"]
        await _text_only(ws)
        await _say(ws, "Hello")
        await _until(ws, "conversation.item.done")
        lock = TurnLock(live_server.backends.redis, conversation_id)
        assert await lock.acquire()
        try:
            await ws.send(json.dumps({"type": "response.create"}))
            assert (await _recv(ws))["error"]["code"] == "conversation_busy"
        finally:
            await lock.release()
        await ws.send(json.dumps({"type": "response.create"}))
        assert (await _until(ws, "response.done"))[-1]["response"]["status"] == "completed"


async def test_a_session_resumes_an_active_conversation(live_server: LiveServer) -> None:
    agent_id = await _agent(live_server, first_message="Welcome!")
    async with _connect(live_server, f"model={agent_id}") as ws:
        created = await _recv(ws)
        greeting = await _until(ws, "conversation.item.done")
        assert greeting[-1]["item"]["content"][0]["text"] == "Welcome!"
        conversation_id = created["vocalis"]["conversation_id"]
    async with _connect(live_server, f"conversation_id={conversation_id}") as ws:
        resumed = await _recv(ws)
        assert resumed["vocalis"] == {
            "conversation_id": conversation_id,
            "agent_id": agent_id,
            "agent_version": 1,
            "resumed": True,
        }
        await _text_only(ws)
        await _say(ws, "Thanks")
        await _until(ws, "conversation.item.done")
        await ws.send(json.dumps({"type": "response.create"}))
        assert (await _until(ws, "response.done"))[-1]["response"]["status"] == "completed"


async def test_the_handshake_needs_an_api_key(live_server: LiveServer) -> None:
    agent_id = await _agent(live_server)
    url = live_server.base_url.replace("http://", "ws://") + f"/v1/realtime?model={agent_id}"
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["code"] == "auth_missing"


async def test_a_handshake_with_nul_in_its_url_is_refused(live_server: LiveServer) -> None:
    """Ids with NUL would reach the database (PostgreSQL refuses them): 422 at the door."""
    with pytest.raises(InvalidStatus) as refused:
        async with _connect(live_server, "model=agt_x%00y"):
            pass
    assert refused.value.response.status_code == 422
    assert json.loads(refused.value.response.body)["code"] == "validation_failed"


async def test_another_organisations_conversation_cannot_be_resumed(
    live_server: LiveServer,
) -> None:
    agent_id = await _agent(live_server)
    async with _connect(live_server, f"model={agent_id}") as ws:
        conversation_id = (await _recv(ws))["vocalis"]["conversation_id"]
    globex = await live_server.tenant_named("Globex")
    with pytest.raises(InvalidStatus) as refused:
        async with _connect(live_server, f"conversation_id={conversation_id}", key=globex.key):
            pass
    assert refused.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as unknown_agent:
        async with _connect(live_server, f"model={agent_id}", key=globex.key):
            pass
    assert unknown_agent.value.response.status_code == 404


class _SlowModel:
    """A model that says one word, then takes its time (so a cancel arrives mid-answer)."""

    provider = "scripted"
    model = "slow"

    async def complete(self, messages: Any, **_: Any) -> Any:  # pragma: no cover - unused
        raise NotImplementedError

    async def stream(self, messages: Any, **_: Any) -> AsyncIterator[ChatDelta]:
        yield ChatDelta(text="Let ")
        await asyncio.sleep(30)
        yield ChatDelta(text="me think.", finish_reason="stop")


async def test_cancel_stops_the_response_in_progress(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_id = await _agent(live_server)
    runtime = get_runtime(live_server.app)
    monkeypatch.setattr(runtime, "chat_model", lambda org_id, config: _SlowModel())
    async with _connect(live_server, f"model={agent_id}") as ws:
        await _recv(ws)
        await _text_only(ws)
        await _say(ws, "Hello")
        await _until(ws, "conversation.item.done")
        await ws.send(json.dumps({"type": "response.create"}))
        started = await _until(ws, "response.output_text.delta")
        response_id = started[0]["response"]["id"]
        await ws.send(json.dumps({"type": "response.cancel", "response_id": response_id}))
        events = await _until(ws, "response.done")
        done = events[-1]
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "client_cancelled"
        assert done["response"]["output"][0]["status"] == "incomplete"
        assert [e["type"] for e in events][:4] == [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
        ]
        monkeypatch.undo()  # the next answer comes from the extractive responder again
        await _say(ws, "Hello again")
        await _until(ws, "conversation.item.done")
        await ws.send(json.dumps({"type": "response.create"}))
        assert (await _until(ws, "response.done"))[-1]["response"]["status"] == "completed"


def _sdk_server_models() -> dict[str, Any]:
    """The openai SDK's model for each server event type (the shapes clients parse)."""
    union = typing.get_args(RealtimeServerEvent)[0]
    models: dict[str, Any] = {}
    for member in typing.get_args(union):
        for literal in typing.get_args(member.model_fields["type"].annotation):
            models[literal] = member
    return models


async def test_every_standard_server_event_validates_against_the_openai_sdk_models(
    live_server: LiveServer,
) -> None:
    agent_id = await _agent(live_server, tools=[{"type": "transfer_to_human"}], first_message="Hi")
    async with _connect(live_server, f"model={agent_id}") as ws:
        events = await _until(ws, "conversation.item.done")  # session.created and the greeting
        update = {"type": "realtime", "output_modalities": ["text"]}
        await ws.send(json.dumps({"type": "session.update", "session": update}))
        events += await _until(ws, "session.updated")
        await ws.send(json.dumps({"type": "nope"}))
        events += await _until(ws, "error")
        for text in ("Hello", "Put me through to a real person"):
            await _say(ws, text)
            events += await _until(ws, "conversation.item.done")
            await ws.send(json.dumps({"type": "response.create"}))
            events += await _until(ws, "response.done")
    models = _sdk_server_models()
    standard = [e for e in events if not e["type"].startswith("vocalis.")]
    assert {e["type"] for e in standard} >= {
        *RESPONSE_EVENTS,
        "response.function_call_arguments.done",
    }
    for event in standard:
        models[event["type"]].model_validate(event)  # raises on any shape mismatch


async def test_an_immediate_cancel_ends_the_response_and_frees_the_conversation(
    live_server: LiveServer,
) -> None:
    agent_id = await _agent(live_server)
    async with _connect(live_server, f"model={agent_id}") as ws:
        await _recv(ws)
        await _text_only(ws)
        await _say(ws, "Hello")
        await _until(ws, "conversation.item.done")
        await ws.send(json.dumps({"type": "response.create"}))
        await ws.send(json.dumps({"type": "response.cancel"}))
        events = await _until(ws, "response.done")
        assert events[0]["type"] == "response.created"
        assert events[-1]["response"]["status"] == "cancelled"
        assert events[-1]["response"]["id"] == events[0]["response"]["id"]
        await _say(ws, "Hello again")
        await _until(ws, "conversation.item.done")
        await ws.send(json.dumps({"type": "response.create"}))
        assert (await _until(ws, "response.done"))[-1]["response"]["status"] == "completed"

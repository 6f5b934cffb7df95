"""`session.update` takes every field of OpenAI's GA session; what the agent allows applies."""

from __future__ import annotations

from typing import Any

import pytest

from tests.agents_api.harness import LiveServer
from tests.realtime.client import (
    TEXT_ONLY,
    RecordingModel,
    answer,
    connect,
    create_agent,
    recv,
    sdk,
    send,
    until,
    update,
    user_text,
)
from vocalis.agents.runtime import get_runtime
from vocalis.realtime.protocol import EAGERNESS_SILENCE_MS, SemanticVad

LOOKUP = {
    "type": "function",
    "name": "lookup_order",
    "description": "Find an order by its number.",
    "parameters": {"type": "object", "properties": {"number": {"type": "string"}}},
}


def _record(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> RecordingModel:
    model = RecordingModel()
    runtime = get_runtime(live.app)
    monkeypatch.setattr(runtime, "chat_model", lambda org_id, config: model)
    return model


async def test_every_ga_session_field_is_accepted_and_the_effective_session_reported(
    live_server: LiveServer,
) -> None:
    agent_id = await create_agent(live_server)
    fields: dict[str, Any] = {
        "type": "realtime",
        "model": agent_id,
        "instructions": "Answer in one sentence.",
        "tools": [LOOKUP],
        "tool_choice": "auto",
        "tracing": {"workflow_name": "support-desk"},
        "include": ["item.input_audio_transcription.logprobs"],
        "prompt": {"id": "pmpt_123", "variables": {"city": "Paris"}},
        "truncation": "auto",
        "max_output_tokens": 300,
        "audio": {
            "input": {
                "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
                "turn_detection": {"type": "semantic_vad", "eagerness": "high"},
                "noise_reduction": {"type": "near_field"},
            },
            "output": {"voice": "marin", "speed": 1.1},
        },
    }
    async with connect(live_server, f"model={agent_id}") as ws:
        await recv(ws)
        session = (await update(ws, fields))["session"]
    assert session["model"] == agent_id
    assert session["instructions"] == "Answer in one sentence."
    assert session["tools"] == [LOOKUP]
    assert session["tracing"]["workflow_name"] == "support-desk"
    assert session["include"] == ["item.input_audio_transcription.logprobs"]
    assert session["prompt"]["id"] == "pmpt_123"
    assert session["max_output_tokens"] == 300
    detection = session["audio"]["input"]["turn_detection"]
    assert detection["type"] == "semantic_vad" and detection["eagerness"] == "high"
    assert session["audio"]["output"]["voice"] == "marin"


async def test_the_sdk_parses_session_updated_after_a_semantic_vad_update(
    live_server: LiveServer,
) -> None:
    agent_id = await create_agent(live_server)
    async with sdk(live_server).realtime.connect(model=agent_id) as connection:
        assert (await connection.recv()).type == "session.created"
        await connection.session.update(
            session={
                "type": "realtime",
                "model": "gpt-realtime",
                "tracing": "auto",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 24000},
                        "turn_detection": {"type": "semantic_vad", "interrupt_response": True},
                    }
                },
            }
        )
        updated = await connection.recv()
    assert updated.type == "session.updated"
    assert updated.session.model == agent_id  # the session stays on its agent
    assert updated.session.tracing == "auto"  # type: ignore[union-attr]


async def test_a_change_of_turn_detection_type_replaces_the_old_settings(
    live_server: LiveServer,
) -> None:
    agent_id = await create_agent(live_server)
    semantic = {"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}
    server = {"audio": {"input": {"turn_detection": {"type": "server_vad"}}}}
    async with connect(live_server, f"model={agent_id}") as ws:
        created = (await recv(ws))["session"]
        assert created["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        after_semantic = (await update(ws, {"type": "realtime", **semantic}))["session"]
        after_server = (await update(ws, {"type": "realtime", **server}))["session"]
    assert after_semantic["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "auto",
        "create_response": True,
        "interrupt_response": True,
    }
    assert after_server["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 500


def test_semantic_eagerness_sets_how_long_a_pause_ends_the_turn() -> None:
    silences = [
        SemanticVad(type="semantic_vad", eagerness=e).silence_duration_ms
        for e in ("low", "medium", "high")
    ]
    assert silences == sorted(silences, reverse=True)
    assert SemanticVad(type="semantic_vad").silence_duration_ms == EAGERNESS_SILENCE_MS["medium"]


async def test_session_instructions_and_system_items_are_added_to_the_agents_own(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_id = await create_agent(live_server, instructions="You are Acme's support agent.")
    model = _record(live_server, monkeypatch)
    async with connect(live_server, f"model={agent_id}") as ws:
        await recv(ws)
        await update(ws, {**TEXT_ONLY, "instructions": "Answer in French."})
        system = {
            "type": "message",
            "role": "system",
            "content": [{"type": "input_text", "text": "The caller is a premium customer."}],
        }
        await send(ws, "conversation.item.create", item=system)
        added = await until(ws, "conversation.item.done")
        assert added[-1]["item"]["role"] == "system"
        await send(ws, "conversation.item.create", item=user_text("Hello"))
        await until(ws, "conversation.item.done")
        done = (await answer(ws))[-1]
    assert done["response"]["status"] == "completed"
    prompt = model.system_prompt()
    assert "You are Acme's support agent." in prompt
    assert "Answer in French." in prompt
    assert "The caller is a premium customer." in prompt


async def test_an_assistant_item_joins_the_agents_memory_of_the_conversation(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_id = await create_agent(live_server)
    model = _record(live_server, monkeypatch)
    said = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Your order ships on Monday."}],
    }
    async with connect(live_server, f"model={agent_id}") as ws:
        await recv(ws)
        await update(ws, TEXT_ONLY)
        await send(ws, "conversation.item.create", item=user_text("Where is my order?"))
        await until(ws, "conversation.item.done")
        await answer(ws)
        await send(ws, "conversation.item.create", item=said)
        assert (await until(ws, "conversation.item.done"))[-1]["item"]["role"] == "assistant"
        await send(ws, "conversation.item.create", item=user_text("When does it ship?"))
        await until(ws, "conversation.item.done")
        await answer(ws)
    history = [(m.role, m.content) for m in model.calls[-1]["messages"]]
    assert ("assistant", "Your order ships on Monday.") in history


async def test_the_response_length_limit_reaches_the_model(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_id = await create_agent(live_server)
    model = _record(live_server, monkeypatch)
    async with connect(live_server, f"model={agent_id}") as ws:
        await recv(ws)
        await update(ws, {**TEXT_ONLY, "max_output_tokens": 64})
        await send(ws, "conversation.item.create", item=user_text("Hello"))
        await until(ws, "conversation.item.done")
        await answer(ws)
    assert model.calls[-1]["max_tokens"] == 64


async def test_a_client_tool_named_like_one_of_the_agents_tools_is_refused(
    live_server: LiveServer,
) -> None:
    agent_id = await create_agent(live_server, tools=[{"type": "transfer_to_human"}])
    clash = {**LOOKUP, "name": "transfer_to_human"}
    async with connect(live_server, f"model={agent_id}") as ws:
        await recv(ws)
        await send(ws, "session.update", session={"type": "realtime", "tools": [clash]})
        refused = await recv(ws)
    assert refused["type"] == "error"
    assert refused["error"]["code"] == "client_tool_name_taken"

"""GA defaults through the official SDK client: a session that never sends `session.update`
answers speech with audio; a spoken turn emits the same items as a typed one."""

from __future__ import annotations

import json
from typing import Any

from tests.realtime.client import (
    GA_DEFAULT_FORMAT,
    TEXT_ONLY,
    answer,
    connect,
    recv,
    say,
    sdk_call,
    speak,
    update,
)
from tests.voice.helpers import VoiceServer, loudness, pcm_of
from vocalis.adapters.espeak_tts import EspeakTTS

FUNCTION_CALL_EVENTS = (
    "response.output_item.added",
    "response.function_call_arguments.done",
    "response.output_item.done",
)


async def test_a_session_that_never_sends_session_update_answers_speech_with_audio(
    voice_server: VoiceServer, espeak: EspeakTTS
) -> None:
    async with sdk_call(voice_server, voice_server.agent_id) as (connection, received):
        created = await received.wait_for("session.created")
        await speak(connection, espeak, "What is your refund policy?")
        done = await received.wait_for("response.done", timeout=90)
    assert created["session"]["output_modalities"] == ["audio"]
    assert done["response"]["status"] == "completed"
    assert done["response"]["output_modalities"] == ["audio"]
    deltas = [e["delta"] for e in received.of("response.output_audio.delta")]
    assert deltas, "the answer is spoken"
    assert loudness(pcm_of(deltas, GA_DEFAULT_FORMAT)) > 300
    [item] = done["response"]["output"]
    assert item["content"][0]["type"] == "output_audio"
    assert "thirty days" in item["content"][0]["transcript"].lower()
    assert not received.of("response.output_text.delta")


def _function_call_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The function-call items' events, without ids (which differ from turn to turn)."""
    calls = []
    for event in events:
        item = event.get("item") or {}
        is_call = event["type"] == FUNCTION_CALL_EVENTS[1] or item.get("type") == "function_call"
        if event["type"] not in FUNCTION_CALL_EVENTS or not is_call:
            continue
        shown = {"type": event["type"], "name": event.get("name") or item.get("name")}
        arguments = event.get("arguments") or item.get("arguments") or ""
        shown["argument_names"] = sorted(json.loads(arguments)) if arguments else []
        shown["status"] = item.get("status")
        calls.append(shown)
    return calls


async def test_a_spoken_turn_calling_a_tool_emits_the_same_function_call_items_as_a_typed_one(
    voice_server: VoiceServer, espeak: EspeakTTS
) -> None:
    live = voice_server.live
    async with live.client() as http:
        created = await http.post(
            "/v1/agents",
            json={
                "name": "Front desk",
                "instructions": "Put callers through to a person when they ask.",
                "knowledge_base_ids": [],
                "tools": [{"type": "transfer_to_human"}],
            },
        )
        agent_id = created.json()["id"]
    request = "I want to talk to a human."
    async with connect(live, f"model={agent_id}") as ws:
        await recv(ws)
        await update(ws, TEXT_ONLY)
        await say(ws, request)
        typed = await answer(ws)
    async with sdk_call(voice_server, agent_id) as (connection, received):
        await received.wait_for("session.created")
        await speak(connection, espeak, request)
        done = await received.wait_for("response.done", timeout=90)
    spoken = received.events_of(done["response"]["id"])
    assert done["response"]["output_modalities"] == ["audio"]
    assert _function_call_events(typed), "the typed turn calls the tool"
    assert _function_call_events(spoken) == _function_call_events(typed)
    tool_items = [o for o in done["response"]["output"] if o["type"] == "function_call"]
    assert [o["name"] for o in tool_items] == ["transfer_to_human"]

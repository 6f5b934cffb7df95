"""The OpenAI Agents SDK's realtime client, with its defaults, against our realtime WebSocket.

`RealtimeRunner` opens `OpenAIRealtimeWebSocketModel` with only the URL and key overridden:
its first `session.update` carries the SDK's defaults (`semantic_vad` turn detection, a
voice, `gpt-4o-mini-transcribe` transcription, its own model name, the agent's
instructions), all of which the server must accept.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from agents.realtime import RealtimeAgent, RealtimeRunner, RealtimeSession

from tests.voice.helpers import VoiceServer, loudness

TURN_TIMEOUT_S = 60


@dataclass
class Turn:
    """What the session streamed for one turn."""

    types: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    transcript: list[str] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)


async def _one_turn(session: RealtimeSession) -> Turn:
    """Read session events until the agent's turn ends (or an error arrives)."""
    turn = Turn()
    async with asyncio.timeout(TURN_TIMEOUT_S):
        async for event in session:
            turn.types.append(event.type)
            if event.type == "error":
                turn.errors.append(event.error)
                break
            if event.type == "audio":
                turn.audio.extend(event.audio.data)
            elif event.type == "raw_model_event" and event.data.type == "transcript_delta":
                turn.transcript.append(event.data.delta)
            elif event.type == "agent_end":
                break
    return turn


async def test_the_agents_sdk_realtime_client_completes_a_turn_with_its_defaults(
    voice_server: VoiceServer,
) -> None:
    agent = RealtimeAgent(name="Store assistant", instructions="Answer from the store's policies.")
    runner = RealtimeRunner(agent)
    model_config: Any = {"url": voice_server.ws_url, "api_key": voice_server.live.tenant.key}
    async with await runner.run(model_config=model_config) as session:
        await session.send_message("What is the refund policy?")
        turn = await _one_turn(session)
    assert not turn.errors, turn.errors
    assert "agent_end" in turn.types, turn.types
    assert loudness(bytes(turn.audio)) > 300, "the SDK's default output is spoken audio"
    assert "thirty days" in "".join(turn.transcript).lower(), turn.transcript

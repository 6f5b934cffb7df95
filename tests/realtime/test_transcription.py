"""A `transcription` session turns speech into text and never answers (official SDK client)."""

from __future__ import annotations

import asyncio

import websockets

from tests.agents_api.harness import LiveServer
from tests.realtime.client import create_agent, recv, sdk_call, speak
from tests.voice.helpers import VoiceServer
from vocalis.adapters.espeak_tts import EspeakTTS


async def test_a_transcription_session_transcribes_speech_and_never_answers(
    voice_server: VoiceServer, espeak: EspeakTTS
) -> None:
    async with sdk_call(voice_server, voice_server.agent_id) as (connection, received):
        await received.wait_for("session.created")
        await connection.session.update(
            session={
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 24000},
                        "turn_detection": {"type": "server_vad"},
                    }
                },
            }
        )
        updated = await received.wait_for("session.updated")
        await speak(connection, espeak, "What is your refund policy?")
        completed = await received.wait_for(
            "conversation.item.input_audio_transcription.completed", timeout=60
        )
        await connection.response.create()
        refused = await received.wait_for("error")
        await asyncio.sleep(1.0)  # long enough for a response to have started
    assert updated["session"]["type"] == "transcription"
    assert "refund" in completed["transcript"].lower()
    assert received.of("input_audio_buffer.committed")
    assert refused["error"]["code"] == "responses_unavailable"
    assert not received.of("response.created")


async def test_a_client_secret_can_open_a_transcription_session(live_server: LiveServer) -> None:
    agent_id = await create_agent(live_server)
    async with live_server.client() as http:
        minted = await http.post(
            "/v1/realtime/client_secrets",
            json={"session": {"type": "transcription", "model": agent_id}},
        )
        assert minted.status_code == 200, minted.text
    secret = minted.json()["value"]
    url = live_server.base_url.replace("http://", "ws://") + f"/v1/realtime?token={secret}"
    async with websockets.connect(url) as ws:
        session = (await recv(ws))["session"]
    assert session["type"] == "transcription"
    assert session["audio"]["input"]["turn_detection"]["create_response"] is False

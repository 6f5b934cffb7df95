"""The raw-PCM WebSocket transport passes the same spoken scenario as the OpenAI one."""

from __future__ import annotations

import json

import websockets
from websockets.exceptions import InvalidStatus

from tests.voice.helpers import (
    SPOKEN_QUESTIONS,
    VoiceServer,
    ask_spoken_questions,
    check_spoken_answers,
    raw_pcm_call,
)
from vocalis.adapters.espeak_tts import EspeakTTS


async def test_spoken_questions_over_raw_pcm_get_accurate_transcripts_and_spoken_answers(
    knowledge_voice_server: VoiceServer, espeak: EspeakTTS
) -> None:
    async with raw_pcm_call(knowledge_voice_server) as call:
        turns = await ask_spoken_questions(call, espeak)
    check_spoken_answers(turns, SPOKEN_QUESTIONS)


async def test_hanging_up_ends_the_conversation_as_ended_by_the_user(
    voice_server: VoiceServer,
) -> None:
    async with raw_pcm_call(voice_server) as call:
        conversation_id = call.received.of("ready")[0]["conversation_id"]
        await call.ws.send(json.dumps({"type": "end"}))
        end = await call.received.wait_for("end")
    assert end["reason"] == "user_ended"
    async with voice_server.live.client() as http:
        conversation = (await http.get(f"/v1/conversations/{conversation_id}")).json()
    assert conversation["status"] == "ended"
    assert conversation["ended_reason"] == "user_ended"


async def test_a_typed_message_is_answered_aloud(voice_server: VoiceServer) -> None:
    async with raw_pcm_call(voice_server) as call:
        await call.ws.send(json.dumps({"type": "text", "text": "What is your refund policy?"}))
        await call.answered(1, timeout=30)
    done = call.received.of("response.done")[0]
    assert done["status"] == "completed"
    assert "thirty days" in done["text"]
    assert len(call.audio[done["response_id"]]) > 16000  # over half a second of speech


async def test_a_connection_without_credentials_is_refused(voice_server: VoiceServer) -> None:
    url = voice_server.live.base_url.replace("http://", "ws://") + "/v1/voice/pcm?agent_id=x"
    try:
        async with websockets.connect(url):
            raise AssertionError("the handshake was accepted")
    except InvalidStatus as exc:
        assert exc.response.status_code == 401


async def test_a_reply_truncated_to_what_the_client_played_is_stored_that_way(
    voice_server: VoiceServer,
) -> None:
    async with raw_pcm_call(voice_server) as call:
        conversation_id = call.received.of("ready")[0]["conversation_id"]
        await call.ws.send(json.dumps({"type": "text", "text": "Tell me about the warranty."}))
        await call.answered(1, timeout=30)
        done = call.received.of("response.done")[0]
        truncate = {"type": "truncate", "item_id": done["item_id"], "played_ms": 2500}
        await call.ws.send(json.dumps(truncate))
        truncated = await call.received.wait_for("truncated")
    heard = truncated["text"].split()
    assert 0 < len(heard) < len(done["text"].split())
    assert heard == done["text"].split()[: len(heard)], "what was heard is the reply's start"
    async with voice_server.live.client() as http:
        conversation = (await http.get(f"/v1/conversations/{conversation_id}")).json()
    stored = next(m for m in conversation["messages"] if m["id"] == done["item_id"])
    assert stored["content"] == truncated["text"]

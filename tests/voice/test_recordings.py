"""Recordings: each voice turn's audio, both sides, as WAV linked from the messages."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import wave
from typing import Any

from tests.voice.helpers import (
    Received,
    VoiceServer,
    audio_update,
    read_raw,
    silence_in,
    speech,
    stream,
    wire_format,
)
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.conversations import store
from vocalis.core.object_keys import conversation_prefix


async def _one_turn(server: VoiceServer, espeak: EspeakTTS) -> tuple[str, dict[str, Any]]:
    """Say hello in μ-law; returns the conversation id and the `response.done`."""
    fmt = wire_format("ulaw")
    received = Received()
    async with server.connect() as ws:
        reader = asyncio.create_task(read_raw(ws, received))
        created = await received.wait_for("session.created")
        await ws.send(json.dumps({"type": "session.update", "session": audio_update("ulaw")}))
        await received.wait_for("session.updated")
        hello = await speech(espeak, "Hello there!", fmt) + silence_in(fmt, 0.8)
        await stream(ws.send, hello, fmt, speed=2.0)
        done = await received.wait_for("response.done", timeout=30)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return created["vocalis"]["conversation_id"], done


async def _messages(server: VoiceServer, conversation_id: str) -> list[dict[str, Any]]:
    """The stored messages (the transcript API does not show `recording` yet)."""
    live = server.live
    return await store.list_messages(live.backends.documents, live.tenant.org_id, conversation_id)


def _wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as wav:
        return wav.getnframes() / wav.getframerate()


async def test_both_sides_of_a_turn_are_recorded_and_linked_from_the_messages(
    voice_server: VoiceServer, espeak: EspeakTTS
) -> None:
    conversation_id, done = await _one_turn(voice_server, espeak)
    assert done["response"]["status"] == "completed"
    user, agent = await _messages(voice_server, conversation_id)
    assert (user["role"], agent["role"]) == ("user", "assistant")
    async with voice_server.live.client() as http:
        for message, speaker, low, high in ((user, "user", 0.8, 3.0), (agent, "agent", 1.0, 6.0)):
            link = message["recording"]
            assert link["speaker"] == speaker
            assert link["key"].endswith(f"{user['sequence']:06d}-{speaker}.wav")
            assert link["url"].startswith(f"/v1/conversations/{conversation_id}/recordings/")
            download = await http.get(link["url"])
            assert download.status_code == 200
            assert download.headers["content-type"] == "audio/wav"
            assert low < _wav_seconds(download.content) < high, speaker
            assert abs(_wav_seconds(download.content) * 1000 - link["duration_ms"]) < 50
        other = await voice_server.live.tenant_named("Globex")
        foreign = await http.get(
            user["recording"]["url"], headers={"Authorization": f"Bearer {other.key}"}
        )
        assert foreign.status_code == 404


async def test_nothing_is_recorded_when_the_voice_recording_flag_is_off(
    voice_server: VoiceServer, espeak: EspeakTTS
) -> None:
    async with voice_server.live.client() as http:
        off = await http.put("/v1/admin/flags/voice.recording", json={"value": False})
        assert off.status_code == 200, off.text
    conversation_id, done = await _one_turn(voice_server, espeak)
    assert done["response"]["status"] == "completed"
    messages = await _messages(voice_server, conversation_id)
    assert [m.get("recording") for m in messages] == [None, None]
    prefix = conversation_prefix(voice_server.live.tenant.org_id, conversation_id)
    assert [o async for o in voice_server.live.backends.objects.list(prefix)] == []

"""Barge-in: the caller speaking over the agent cuts it off, and only what was heard is kept."""

from __future__ import annotations

import asyncio
import base64
import contextlib

from prometheus_client import REGISTRY

from tests.voice.helpers import (
    WARRANTY,
    Microphone,
    Received,
    VoiceServer,
    audio_update,
    pcm_of,
    read_sdk,
    speech,
    wire_format,
)
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.agents.graph import conversation_messages
from vocalis.agents.runtime import get_runtime
from vocalis.core.audio import duration_seconds
from vocalis.voice.pipeline import speakable

# Silero needs 160 ms of speech to be sure, plus the frames in transit.
DETECTION_AFTER_SPEECH_S = 0.8
# The answer's audio stops arriving within this long of the caller starting to speak.
STOP_AFTER_SPEECH_S = 0.5


async def test_speech_during_a_spoken_answer_stops_it_and_only_what_was_heard_is_stored(
    voice_server: VoiceServer, espeak: EspeakTTS, server_loop: asyncio.AbstractEventLoop
) -> None:
    fmt = wire_format("pcm24")
    barge_ins_before = REGISTRY.get_sample_value("vocalis_voice_barge_ins_total") or 0.0
    received = Received()
    client = voice_server.openai()
    async with client.realtime.connect(model=voice_server.agent_id) as connection:
        reader = asyncio.create_task(read_sdk(connection, received))
        created = await received.wait_for("session.created")
        await connection.session.update(session=audio_update("pcm24"))  # type: ignore[arg-type]
        await received.wait_for("session.updated")

        async def send(chunk: bytes) -> None:
            await connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())

        interruption = await speech(espeak, "Sorry, stop there, please.", fmt)
        async with Microphone(send, fmt) as microphone:
            microphone.say(await speech(espeak, "Tell me about the warranty.", fmt))
            await received.wait_for("response.output_audio.delta", timeout=30)
            await asyncio.sleep(2.0)  # the agent is mid-answer
            started_speaking = await microphone.say(interruption).started
            done = await received.wait_for("response.done", timeout=10)
            await received.wait_for("response.done", count=2, timeout=30)  # answers "sorry…"
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader

    response = done["response"]
    assert REGISTRY.get_sample_value("vocalis_voice_barge_ins_total") == barge_ins_before + 1
    assert response["status"] == "cancelled"
    assert response["status_details"]["reason"] == "turn_detected"
    barge_in = received.of("input_audio_buffer.speech_started")[1]
    detected_at = received.at(barge_in)
    assert detected_at - started_speaking <= DETECTION_AFTER_SPEECH_S
    cut = [
        e for e in received.of("response.output_audio.delta") if e["response_id"] == response["id"]
    ]
    assert received.at(cut[-1]) - started_speaking <= STOP_AFTER_SPEECH_S

    heard = next(
        e["transcript"]
        for e in received.of("response.output_audio_transcript.done")
        if e["response_id"] == response["id"]
    )
    full = speakable(WARRANTY).split()
    assert heard, "about two seconds of the answer were played"
    assert heard.split() == full[: len(heard.split())], "what was heard is the answer's start"
    assert len(heard.split()) < len(full)
    played = duration_seconds(pcm_of([e["delta"] for e in cut], fmt), fmt.sample_rate)
    spoken_share = len(heard.split()) / len(full)
    full_seconds = played / max(spoken_share, 1e-6)
    assert 2.0 < played < full_seconds, "the answer was cut short, not played to the end"

    conversation_id = created["vocalis"]["conversation_id"]
    async with voice_server.live.client() as http:
        transcript = (await http.get(f"/v1/conversations/{conversation_id}")).json()
    stored = next(m for m in transcript["messages"] if m["id"] == done["vocalis"]["message_id"])
    assert stored["role"] == "assistant"
    assert stored["content"] == heard

    # The agent's memory of its answer is what was heard too (it builds on it next turn).
    graph = get_runtime(voice_server.live.app).graph
    history = await asyncio.wrap_future(
        asyncio.run_coroutine_threadsafe(conversation_messages(graph, conversation_id), server_loop)
    )
    answers = [m["content"] for m in history if m["role"] == "assistant"]
    assert answers[0] == heard

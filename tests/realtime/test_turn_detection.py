"""`semantic_vad` through the official openai SDK's realtime client: the end-of-turn model
(Smart Turn, the default detector) ends the turn, and `response.done` says how long it took.

The caller speaks (espeak-ng) and then keeps its microphone open, sending silence in real
time as a client does, until the answer is done.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any

from tests.voice.helpers import (
    Received,
    VoiceServer,
    audio_update,
    chunks,
    read_sdk,
    silence_in,
    speech,
    wire_format,
)
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.voice.wer import word_error_rate

QUESTION = "How long does shipping to Canada take?"


async def _speak_then_listen(connection: Any, received: Received, pcm: bytes) -> None:
    """Speech, then an open microphone's silence until `response.done`, at real-time pace."""
    fmt = wire_format("pcm24")
    frames = chunks(pcm, fmt, 20)
    quiet = silence_in(fmt, 0.02)
    loop = asyncio.get_running_loop()
    started, index = loop.time(), 0
    while not received.of("response.done"):
        frame = frames[index] if index < len(frames) else quiet
        await connection.input_audio_buffer.append(audio=base64.b64encode(frame).decode())
        index += 1
        await asyncio.sleep(max(0.0, started + index * 0.02 - loop.time()))
        if index > len(frames) + 1500:  # 30 s of silence and no answer
            raise AssertionError(f"no response.done; got {received.types()[-20:]}")


async def test_semantic_vad_is_accepted_and_the_turn_model_ends_the_turn(
    voice_server: VoiceServer, espeak: EspeakTTS
) -> None:
    received = Received()
    async with voice_server.openai().realtime.connect(model=voice_server.agent_id) as connection:
        reader = asyncio.create_task(read_sdk(connection, received))
        try:
            await received.wait_for("session.created")
            update = audio_update("pcm24")
            update["audio"]["input"]["turn_detection"] = {
                "type": "semantic_vad",
                "eagerness": "auto",
            }
            await connection.session.update(session=update)  # type: ignore[arg-type]
            updated = await received.wait_for("session.updated")
            detection = updated["session"]["audio"]["input"]["turn_detection"]
            assert detection["type"] == "semantic_vad" and detection["eagerness"] == "auto"
            await _speak_then_listen(
                connection, received, await speech(espeak, QUESTION, wire_format("pcm24"))
            )
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    stopped = received.of("input_audio_buffer.speech_stopped")
    assert len(stopped) == 1
    transcript = received.of("conversation.item.input_audio_transcription.completed")[0]
    assert word_error_rate([QUESTION], [transcript["transcript"]]) <= 0.2
    done = received.of("response.done")[0]
    assert done["response"]["status"] == "completed"
    latency = done["vocalis"]["latency_ms"]
    # The model decided (its time is in the breakdown), within the silence that ended the
    # turn, which the 3 s cap (`VOCALIS_VOICE_TURN_MAX_SILENCE_MS`) bounds.
    assert 0 < latency.get("turn_decision", 0) < latency["endpointing"] <= 3000 + 64, latency

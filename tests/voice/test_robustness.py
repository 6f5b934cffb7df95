"""What a voice session does with silence and with input it cannot use."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

import numpy as np

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
from vocalis.core.audio import encode


def _append(data: bytes | str) -> str:
    audio = data if isinstance(data, str) else base64.b64encode(data).decode()
    return json.dumps({"type": "input_audio_buffer.append", "audio": audio})


async def _error_after(ws: Any, received: Received, message: str | bytes) -> dict[str, Any]:
    count = len(received.of("error"))
    await ws.send(message)
    return (await received.wait_for("error", count=count + 1, timeout=10))["error"]


async def test_silence_and_quiet_noise_produce_no_turn(
    voice_server: VoiceServer,
) -> None:
    fmt = wire_format("pcm16")
    rng = np.random.default_rng(7)
    noise = (rng.normal(0, 60, fmt.sample_rate * 2)).astype("<i2").tobytes()  # a quiet room
    received = Received()
    async with voice_server.connect() as ws:
        reader = asyncio.create_task(read_raw(ws, received))
        await ws.send(json.dumps({"type": "session.update", "session": audio_update("pcm16")}))
        await received.wait_for("session.updated")

        async def send(chunk: bytes) -> None:
            await ws.send(_append(chunk))

        await stream(send, silence_in(fmt, 2.0) + encode(noise, fmt), fmt, speed=4.0)
        await asyncio.sleep(1.0)  # time for a turn to be found, if one were
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    assert received.types() == ["session.created", "session.updated"]


async def test_malformed_input_gets_error_events_and_the_session_stays_usable(
    voice_server: VoiceServer, espeak: EspeakTTS
) -> None:
    fmt = wire_format("pcm24")
    limit = voice_server.live.app.state.backends.settings.voice_max_frame_bytes
    received = Received()
    async with voice_server.connect() as ws:
        reader = asyncio.create_task(read_raw(ws, received))
        await received.wait_for("session.created")
        # Binary audio before its format was declared.
        assert (await _error_after(ws, received, b"\x00\x00" * 160))["code"] == (
            "unsupported_frame"
        )
        # Formats the server does not take.
        for bad in ({"type": "audio/pcm", "rate": 44100}, {"type": "audio/mp3"}):
            update = {"type": "realtime", "audio": {"input": {"format": bad}}}
            error = await _error_after(
                ws, received, json.dumps({"type": "session.update", "session": update})
            )
            assert error["code"] == "invalid_value"
            assert error["param"].startswith("session.audio.input.format")
        await ws.send(json.dumps({"type": "session.update", "session": audio_update("pcm24")}))
        updated = await received.wait_for("session.updated")
        assert updated["session"]["audio"]["input"]["format"] == {
            "type": "audio/pcm",
            "rate": 24000,
        }
        # An odd number of PCM16 bytes, as base64 and as a binary frame.
        assert (await _error_after(ws, received, _append(b"\x01\x02\x03")))["code"] == (
            "invalid_audio"
        )
        assert (await _error_after(ws, received, b"\x01\x02\x03"))["code"] == "invalid_audio"
        # Text where audio is expected.
        error = await _error_after(ws, received, _append("What is your refund policy?"))
        assert (error["code"], error["param"]) == ("invalid_audio", "audio")
        bad_type = json.dumps({"type": "input_audio_buffer.append", "audio": 12})
        assert (await _error_after(ws, received, bad_type))["code"] == "invalid_value"
        assert (await _error_after(ws, received, "hello, can you hear me?"))["code"] == (
            "invalid_json"
        )
        # Frames over the size limit.
        huge = bytes(limit + 2)
        assert (await _error_after(ws, received, _append(huge)))["code"] == "audio_frame_too_large"
        assert (await _error_after(ws, received, huge))["code"] == "audio_frame_too_large"
        # Committing by hand while the server detects turns.
        commit = json.dumps({"type": "input_audio_buffer.commit"})
        assert (await _error_after(ws, received, commit))["code"] == (
            "input_audio_buffer_commit_unavailable"
        )
        # After all that, a spoken turn still gets its spoken answer.
        # A phrase Whisper tiny.en hears the same whatever the padding ("Hello there!" came back
        # as "The lone error." with 0.3 s of trailing silence, even from the clean audio).
        question = await speech(espeak, "Hello, can you hear me?", fmt) + silence_in(fmt, 0.8)
        await stream(ws.send, question, fmt, speed=2.0)  # binary frames, now declared
        done = await received.wait_for("response.done", timeout=30)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    assert done["response"]["status"] == "completed"
    assert (
        received.of("conversation.item.input_audio_transcription.completed")[0]["transcript"]
        .lower()
        .startswith("hello")
    )
    assert received.of("response.output_audio.delta")

"""Every audio format end to end, four callers at once; and turns committed by the client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

from prometheus_client import REGISTRY

from tests.voice.conftest import LoopLag
from tests.voice.helpers import (
    FORMATS,
    Received,
    VoiceServer,
    audio_update,
    loudness,
    pcm_of,
    read_raw,
    read_sdk,
    silence_in,
    speech,
    stream,
    wire_format,
)
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.core.audio import duration_seconds
from vocalis.voice.wer import word_error_rate

# Telephone audio (G.711) is band-limited to 4 kHz: with the offline tiny.en model and
# synthetic speech its word error rate is far higher (~45%) than at 16/24 kHz (~3%), so the
# wideband callers are held to the 15% bound and the telephone callers to getting their
# answer.
WIDEBAND = ("pcm24", "pcm16")
# A transcription run on the event loop would stall it for 0.45 s or more (0.77 s measured
# with four callers). The test process's older objects are frozen out of the garbage
# collector for the measurement (see `server_loop_lag`).
MAX_LOOP_LAG_S = 0.35
CALLERS = {
    "pcm24": ("Which payment methods do you accept?", "Mastercard"),
    "pcm16": ("How long does shipping to Canada take?", "seven business days"),
    "ulaw": ("When is the support line open?", "Monday to Friday"),
    "alaw": ("What is your refund policy?", "thirty days"),
}


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _call(
    server: VoiceServer, espeak: EspeakTTS, fmt_name: str, question: str
) -> tuple[Received, dict[str, Any]]:
    """One caller asking one question in `fmt_name`, through the official SDK."""
    fmt = wire_format(fmt_name)
    received = Received()
    audio = await speech(espeak, question, fmt) + silence_in(fmt, 0.8)
    async with server.openai().realtime.connect(model=server.agent_id) as connection:
        reader = asyncio.create_task(read_sdk(connection, received))
        await connection.session.update(session=audio_update(fmt_name))  # type: ignore[arg-type]
        updated = await received.wait_for("session.updated")

        async def send(chunk: bytes) -> None:
            await connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())

        await stream(send, audio, fmt)
        done = await received.wait_for("response.done", timeout=90)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return received, updated | {"done": done}


async def test_four_simultaneous_callers_in_every_audio_format_each_get_their_answer(
    voice_server: VoiceServer, espeak: EspeakTTS, server_loop_lag: LoopLag
) -> None:
    turns_before = _count("vocalis_voice_turn_latency_seconds_count")
    transcriptions_before = _count("vocalis_stt_latency_seconds_count", engine="faster-whisper")
    calls = await asyncio.gather(
        *(_call(voice_server, espeak, name, q) for name, (q, _) in CALLERS.items())
    )
    assert _count("vocalis_voice_turn_latency_seconds_count") == turns_before + 4
    assert (
        _count("vocalis_stt_latency_seconds_count", engine="faster-whisper")
        == transcriptions_before + 4
    )
    # Transcription and synthesis run in worker threads: the event loop serving the four
    # callers never stalls for as long as one transcription takes.
    assert server_loop_lag.worst_s < MAX_LOOP_LAG_S, server_loop_lag.report()
    transcripts: dict[str, str] = {}
    for (fmt_name, (_, fact)), (received, summary) in zip(CALLERS.items(), calls, strict=True):
        fmt = wire_format(fmt_name)
        assert summary["session"]["audio"]["output"]["format"]["type"] == FORMATS[fmt_name]["type"]
        done = summary["done"]
        assert done["response"]["status"] == "completed", fmt_name
        [completed] = received.of("conversation.item.input_audio_transcription.completed")
        transcripts[fmt_name] = completed["transcript"]
        assert completed["transcript"].strip(), fmt_name
        raw = b"".join(
            base64.b64decode(e["delta"]) for e in received.of("response.output_audio.delta")
        )
        bytes_per_sample = 2 if fmt.encoding == "pcm16" else 1
        assert len(raw) % bytes_per_sample == 0
        pcm = pcm_of([e["delta"] for e in received.of("response.output_audio.delta")], fmt)
        assert 1.0 < duration_seconds(pcm, fmt.sample_rate) < 20.0, fmt_name
        assert loudness(pcm) > 500, fmt_name
        [spoken] = received.of("response.output_audio_transcript.done")
        assert fact.lower() in spoken["transcript"].lower(), fmt_name
    wideband = [CALLERS[name][0] for name in WIDEBAND]
    heard = [transcripts[name] for name in WIDEBAND]
    assert word_error_rate(wideband, heard) <= 0.15, transcripts


async def test_with_turn_detection_off_the_client_commits_the_turn_and_asks_for_the_answer(
    voice_server: VoiceServer, espeak: EspeakTTS
) -> None:
    fmt = wire_format("pcm16")
    received = Received()
    async with voice_server.connect() as ws:
        reader = asyncio.create_task(read_raw(ws, received))
        update = audio_update("pcm16", manual=True)
        await ws.send(json.dumps({"type": "session.update", "session": update}))
        updated = await received.wait_for("session.updated")
        assert updated["session"]["audio"]["input"]["turn_detection"] is None

        async def send(chunk: bytes) -> None:
            audio = base64.b64encode(chunk).decode()
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))

        await stream(send, await speech(espeak, "What is your refund policy?", fmt), fmt, speed=4)
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        await ws.send(json.dumps({"type": "response.create"}))
        done = await received.wait_for("response.done", timeout=30)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    types = received.types()
    assert "input_audio_buffer.speech_started" not in types  # no VAD in manual mode
    committed = received.of("input_audio_buffer.committed")[0]
    completed = received.of("conversation.item.input_audio_transcription.completed")[0]
    assert completed["item_id"] == committed["item_id"]
    assert word_error_rate(["What is your refund policy?"], [completed["transcript"]]) <= 0.15
    assert types.index("conversation.item.input_audio_transcription.completed") < types.index(
        "response.created"
    )
    assert done["response"]["status"] == "completed"
    assert "thirty days" in received.of("response.output_audio_transcript.done")[0]["transcript"]


async def test_spoken_input_is_answered_in_text_when_the_session_asks_for_text(
    voice_server: VoiceServer, espeak: EspeakTTS
) -> None:
    fmt = wire_format("pcm16")
    received = Received()
    async with voice_server.connect() as ws:
        reader = asyncio.create_task(read_raw(ws, received))
        update = audio_update("pcm16") | {"output_modalities": ["text"]}
        await ws.send(json.dumps({"type": "session.update", "session": update}))
        await received.wait_for("session.updated")
        question = await speech(espeak, "Which payment methods do you accept?", fmt)
        await stream(ws.send, question + silence_in(fmt, 0.8), fmt, speed=4)
        done = await received.wait_for("response.done", timeout=30)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    assert done["response"]["status"] == "completed"
    assert done["response"]["output_modalities"] == ["text"]
    assert not received.of("response.output_audio.delta")
    text = "".join(e["delta"] for e in received.of("response.output_text.delta"))
    assert "Mastercard" in text
    assert received.of("response.output_text.done")[0]["text"] == text

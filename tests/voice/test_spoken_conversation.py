"""A spoken conversation through the official `openai` SDK's realtime client."""

from __future__ import annotations

import asyncio
import base64
import contextlib

from tests.voice.helpers import (
    Received,
    VoiceServer,
    audio_update,
    loudness,
    pcm_of,
    read_sdk,
    silence_in,
    speech,
    stream,
    wire_format,
)
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.voice.audio import duration_seconds
from vocalis.voice.wer import word_error_rate

QUESTIONS = {
    "What is your refund policy?": "thirty days",
    "When is the support line open?": "Monday to Friday",
    "How long does shipping to Canada take?": "five to seven business days",
}
MAX_WER = 0.15


async def test_spoken_questions_get_accurate_transcripts_and_spoken_answers_from_the_knowledge_base(
    knowledge_voice_server: VoiceServer, espeak: EspeakTTS
) -> None:
    voice_server = knowledge_voice_server
    fmt = wire_format("pcm24")
    received = Received()
    client = voice_server.openai()
    async with client.realtime.connect(model=voice_server.agent_id) as connection:
        reader = asyncio.create_task(read_sdk(connection, received))
        await received.wait_for("session.created")
        await connection.session.update(session=audio_update("pcm24"))  # type: ignore[arg-type]
        await received.wait_for("session.updated")

        async def send(chunk: bytes) -> None:
            await connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())

        for number, question in enumerate(QUESTIONS, start=1):
            await stream(send, await speech(espeak, question, fmt), fmt)
            await stream(send, silence_in(fmt, 0.8), fmt)  # the pause that ends the turn
            await received.wait_for("response.done", count=number, timeout=60)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader

    transcripts = [
        e["transcript"]
        for e in received.of("conversation.item.input_audio_transcription.completed")
    ]
    assert len(transcripts) == len(QUESTIONS)
    assert word_error_rate(list(QUESTIONS), transcripts) <= MAX_WER, transcripts
    for number, (done, fact) in enumerate(
        zip(received.of("response.done"), QUESTIONS.values(), strict=True)
    ):
        response = done["response"]
        assert response["status"] == "completed"
        deltas = [
            e["delta"]
            for e in received.of("response.output_audio.delta")
            if e["response_id"] == response["id"]
        ]
        pcm = pcm_of(deltas, fmt)
        assert len(b"".join(base64.b64decode(d) for d in deltas)) % 2 == 0
        assert 1.0 < duration_seconds(pcm, fmt.sample_rate) < 20.0
        assert loudness(pcm) > 500, f"answer {number} is silent"
        transcript = next(
            e["transcript"]
            for e in received.of("response.output_audio_transcript.done")
            if e["response_id"] == response["id"]
        )
        assert fact.lower() in transcript.lower()
        vocalis = done["vocalis"]
        assert vocalis["citations"], "the answer cites the knowledge base"
        latency = vocalis["latency_ms"]
        for part in ("endpointing", "stt", "first_token", "first_audio_byte"):
            assert latency[part] > 0, part

"""The OpenAI-compatible STT/TTS adapters against a real local HTTP server.

The server is a minimal OpenAI-compatible audio API backed by the offline engines, standing
in for any remote provider; the adapters talk to it through the official `openai` SDK.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.unit.voice.conftest import Speak
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.adapters.faster_whisper_stt import FasterWhisperSTT
from vocalis.adapters.openai_stt import OpenAISTT
from vocalis.adapters.openai_tts import OpenAITTS
from vocalis.core.audio import Resampler, duration_seconds, wav_decode
from vocalis.core.errors import BackendUnavailable
from vocalis.ports.stt import SpeechToText
from vocalis.ports.tts import TextToSpeech, synthesize
from vocalis.voice.wer import word_error_rate


def audio_api(
    espeak: EspeakTTS, whisper: FasterWhisperSTT, requests: list[dict[str, Any]]
) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/audio/speech")
    async def speech(request: Request) -> Response:
        body = await request.json()
        requests.append(body)
        if body["input"] == "fail":
            return JSONResponse({"error": {"message": "engine down"}}, status_code=400)

        async def pcm_24k() -> AsyncIterator[bytes]:
            resampler = Resampler(espeak.sample_rate, 24000)
            pending = b""
            async for chunk in espeak.synthesize_stream(body["input"]):
                pending += resampler.push(chunk)
                # Odd-sized pieces: samples split across network chunks, as real servers do.
                while len(pending) > 1001:
                    yield pending[:1001]
                    pending = pending[1001:]
            yield pending + resampler.flush()

        return StreamingResponse(pcm_24k(), media_type="audio/pcm")

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(
        file: UploadFile, model: str = Form(), response_format: str = Form("json")
    ) -> dict[str, Any]:
        requests.append(
            {"model": model, "response_format": response_format, "filename": file.filename}
        )
        decoded = wav_decode(await file.read())
        result = await whisper.transcribe(decoded.pcm16, decoded.sample_rate)
        segments = [
            {"id": i, "start": s.start, "end": s.end, "text": s.text}
            for i, s in enumerate(result.segments)
        ]
        return {
            "text": result.text,
            "language": "english",
            "duration": result.duration,
            "segments": segments,
        }

    return app


@pytest.fixture(scope="module")
async def audio_server(
    espeak: EspeakTTS, whisper: FasterWhisperSTT
) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    requests: list[dict[str, Any]] = []
    server = uvicorn.Server(
        uvicorn.Config(
            audio_api(espeak, whisper, requests), host="127.0.0.1", port=0, log_level="warning"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no startup event
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/v1", requests
    server.should_exit = True
    await task


async def test_openai_tts_streams_pcm_in_whole_samples(
    audio_server: tuple[str, list[dict[str, Any]]],
) -> None:
    base_url, requests = audio_server
    tts = OpenAITTS(base_url=base_url, api_key="test", model="tts-1", chunk_bytes=1001)
    assert isinstance(tts, TextToSpeech)
    chunks = [
        c async for c in tts.synthesize_stream("Your order ships tomorrow morning.", voice="nova")
    ]
    assert len(chunks) > 1 and all(len(c) % 2 == 0 for c in chunks)
    assert 1.0 < duration_seconds(b"".join(chunks), tts.sample_rate) < 5.0
    assert requests[-1] == {
        "input": "Your order ships tomorrow morning.",
        "model": "tts-1",
        "voice": "nova",
        "response_format": "pcm",
    }


async def test_openai_tts_sends_unknown_voices_as_the_default(
    audio_server: tuple[str, list[dict[str, Any]]],
) -> None:
    base_url, requests = audio_server
    await synthesize(
        OpenAITTS(base_url=base_url, default_voice="alloy"), "Hello.", voice="robot-9000"
    )
    assert requests[-1]["voice"] == "alloy"


async def test_openai_tts_errors_are_backend_unavailable(
    audio_server: tuple[str, list[dict[str, Any]]],
) -> None:
    with pytest.raises(BackendUnavailable, match="speech endpoint failed"):
        await synthesize(OpenAITTS(base_url=audio_server[0]), "fail")


async def test_openai_stt_uploads_wav_and_reads_verbose_json(
    audio_server: tuple[str, list[dict[str, Any]]], speak: Speak
) -> None:
    base_url, requests = audio_server
    stt = OpenAISTT(base_url=base_url, api_key="test", model="whisper-1")
    assert isinstance(stt, SpeechToText)
    pcm = await speak("Which payment methods do you accept?")
    transcript = await stt.transcribe(pcm, 16000)
    assert word_error_rate(["Which payment methods do you accept?"], [transcript.text]) <= 0.2
    assert transcript.segments and transcript.duration == pytest.approx(len(pcm) / 32000)
    assert requests[-1] == {
        "model": "whisper-1",
        "response_format": "verbose_json",
        "filename": "audio.wav",
    }


async def test_openai_stt_connection_failure_is_backend_unavailable() -> None:
    stt = OpenAISTT(base_url="http://127.0.0.1:9/v1", timeout=2)
    with pytest.raises(BackendUnavailable):
        await stt.transcribe(b"\x00\x00" * 1600, 16000)

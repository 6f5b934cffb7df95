"""Routes: OpenAI-compatible `POST /v1/audio/transcriptions` (streamed with `stream=true`, word
and segment timestamps), `POST /v1/audio/translations` and `POST /v1/audio/speech`, and
`GET /v1/conversations/{id}/recordings/{name}` (the WAV files voice turns are recorded to).

Both audio endpoints run on the configured engines (offline faster-whisper and espeak-ng
by default). `model` takes `default`, OpenAI's names (`whisper-1`, `gpt-4o-transcribe`,
`tts-1`, …) or the configured engine/model name; all map to the configured engine. A
`voice` the engine does not know falls back to the default voice. Speech is streamed as it
is synthesised: raw PCM16 at 24 kHz (`pcm`, OpenAI's definition) or a WAV stream (`wav`,
the default here: MP3/Opus/AAC/FLAC are not produced). Errors are problem+json that also
carry OpenAI's `error` object.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from vocalis.conversations import service as conversations
from vocalis.core import object_keys
from vocalis.core.audio import (
    INVALID_AUDIO,
    UNSUPPORTED_AUDIO_FORMAT,
    Resampler,
    UnsupportedAudioFormat,
    decode_audio_file,
    duration_seconds,
    wav_header,
)
from vocalis.core.deps import BackendsDep
from vocalis.core.errors import INTERNAL_ERROR, NotFound, VocalisError, register
from vocalis.core.metrics import STT_LATENCY, STT_REAL_TIME_FACTOR, TTS_TIME_TO_FIRST_BYTE
from vocalis.core.openapi import error_responses
from vocalis.core.ratelimit import rate_limit_class
from vocalis.core.security import Principal, Scoped
from vocalis.core.tracing import tracer
from vocalis.openai_compat.api import openai_error
from vocalis.ports.object_store import ObjectNotFound
from vocalis.ports.stt import SegmentTranscriber, Transcript, TranscriptSegment
from vocalis.settings import Settings

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1", tags=["audio"])

AUDIO_PARAMETER_UNSUPPORTED = register(
    "audio_parameter_unsupported",
    400,
    "Audio parameter not supported",
    "An audio request combines parameters that cannot be honoured together "
    "(`timestamp_granularities` without `verbose_json`, `stream` with a subtitle or "
    "`verbose_json` format) or asks the configured engine for what it cannot give (word "
    "times, translation); `param` names it.",
)
AUDIO_MODEL_NOT_FOUND = register(
    "audio_model_not_found",
    404,
    "Unknown audio model",
    "`model` of an audio request is neither `default`, an OpenAI model name nor the "
    "configured engine or model.",
)

STT_RATE = 16000
SPEECH_RATE = 24000  # OpenAI's `pcm` is 24 kHz mono PCM16
STT_ALIASES = frozenset(
    {"default", "whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "whisper"}
)
TTS_ALIASES = frozenset({"default", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"})
MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm"}
_RECORDING_NAME = re.compile(r"^(\d{6})-(user|agent)\.wav$")


def _with_openai_error(exc: VocalisError) -> VocalisError:
    exc.extra = {**exc.extra, "error": openai_error(exc.code, exc.detail, exc.status)}
    return exc


def _check_model(model: str, aliases: frozenset[str], configured: set[str]) -> None:
    if model not in aliases and model not in configured:
        raise _with_openai_error(
            VocalisError(
                f"Unknown model {model!r}: use `default` or one of "
                f"{', '.join(sorted(configured | {'default'}))}.",
                code=AUDIO_MODEL_NOT_FOUND,
            )
        )


def _stt_models(settings: Settings) -> set[str]:
    return {
        settings.voice_stt_engine,
        settings.voice_whisper_model,
        settings.voice_openai_stt_model,
    }


def _tts_models(settings: Settings) -> set[str]:
    return {settings.voice_tts_engine, settings.voice_openai_tts_model}


# --- transcriptions -----------------------------------------------------------------------
TranscriptionFormat = Literal["json", "text", "verbose_json", "srt", "vtt"]


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def subtitles(transcript: Transcript, kind: Literal["srt", "vtt"]) -> str:
    """The transcript's segments as SubRip or WebVTT cues."""
    separator = "," if kind == "srt" else "."
    segments = transcript.segments or ()
    cues: list[str] = []
    for number, segment in enumerate(segments, start=1):
        times = f"{_timestamp(segment.start, separator)} --> {_timestamp(segment.end, separator)}"
        cue = f"{times}\n{segment.text}\n"
        cues.append(f"{number}\n{cue}" if kind == "srt" else cue)
    body = "\n".join(cues)
    return f"WEBVTT\n\n{body}" if kind == "vtt" else body


def verbose(transcript: Transcript, duration: float) -> dict[str, Any]:
    """OpenAI's `verbose_json` transcription."""
    return {
        "task": "transcribe",
        "language": transcript.language or "",
        "duration": round(duration, 3),
        "text": transcript.text,
        "segments": [
            {
                "id": index,
                "seek": 0,
                "start": round(segment.start, 3),
                "end": round(segment.end, 3),
                "text": segment.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": 0.0,
                "compression_ratio": 0.0,
                "no_speech_prob": 0.0,
            }
            for index, segment in enumerate(transcript.segments)
        ],
        "usage": {"type": "duration", "seconds": round(duration, 3)},
    }


TimestampGranularity = Literal["word", "segment"]


def _refused(param: str, message: str) -> VocalisError:
    error = VocalisError(message, code=AUDIO_PARAMETER_UNSUPPORTED)
    error.extra = {"error": openai_error(error.code, message, error.status, param)}
    return error


def _words(transcript_segments: tuple[TranscriptSegment, ...]) -> list[dict[str, Any]]:
    return [
        {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)}
        for segment in transcript_segments
        for w in segment.words
    ]


async def _decode(backends: Any, org_id: str, data: bytes) -> tuple[bytes, Any]:
    try:
        pcm = await asyncio.to_thread(decode_audio_file, data, STT_RATE)
        engines = await backends.voice.get()
    except VocalisError as exc:
        raise _with_openai_error(exc) from None
    return pcm, engines


def _observe(engine: str, seconds: float, duration: float) -> None:
    STT_LATENCY.labels(engine).observe(seconds)
    if duration > 0:
        STT_REAL_TIME_FACTOR.labels(engine).observe(seconds / duration)
    log.info("transcription_done", audio_s=round(duration, 2), stt_s=round(seconds, 3))


async def _run_stt(
    engines: Any,
    org_id: str,
    pcm: bytes,
    language: str | None,
    *,
    words: bool,
    translate: bool,
) -> tuple[Transcript, float]:
    """The whole transcript (segments with words when asked), and the seconds it took."""
    stt = engines.stt
    started = time.perf_counter()
    with tracer().start_as_current_span("stt.transcribe") as span:
        span.set_attribute("vocalis.org_id", org_id)
        span.set_attribute("vocalis.stt.engine", stt.name)
        span.set_attribute("vocalis.stt.task", "translate" if translate else "transcribe")
        try:
            if isinstance(stt, SegmentTranscriber) and (words or translate):
                opened = await stt.transcribe_segments(
                    pcm, STT_RATE, language, words=words, translate=translate
                )
                parts = tuple([s async for s in opened.segments])
                text = " ".join(p.text for p in parts if p.text).strip()
                transcript = Transcript(text, opened.language, 0.0, parts)
            else:
                transcript = await stt.transcribe(pcm, STT_RATE, language)
        except VocalisError as exc:
            raise _with_openai_error(exc) from None
    seconds = time.perf_counter() - started
    _observe(stt.name, seconds, duration_seconds(pcm, STT_RATE))
    return transcript, seconds


def _respond(
    transcript: Transcript,
    duration: float,
    response_format: str,
    granularities: set[str],
    task: str = "transcribe",
) -> Any:
    if response_format == "text":
        return PlainTextResponse(transcript.text + "\n")
    if response_format in ("srt", "vtt"):
        return PlainTextResponse(subtitles(transcript, response_format))  # type: ignore[arg-type]
    if response_format == "verbose_json":
        body = verbose(transcript, duration) | {"task": task}
        if "word" in granularities:
            body["words"] = _words(transcript.segments)
            if "segment" not in granularities:
                body.pop("segments")
        return JSONResponse(body)
    return JSONResponse(
        {"text": transcript.text, "usage": {"type": "duration", "seconds": round(duration, 3)}}
    )


async def _transcript_events(
    engines: Any, org_id: str, pcm: bytes, language: str | None
) -> AsyncIterator[str]:
    """OpenAI's streamed transcript: `transcript.text.delta` per decoded segment, then
    `transcript.text.done` with the whole text (an `error` event if decoding fails)."""
    stt = engines.stt
    started = time.perf_counter()
    parts: list[str] = []
    try:
        with tracer().start_as_current_span("stt.transcribe") as span:
            span.set_attribute("vocalis.org_id", org_id)
            span.set_attribute("vocalis.stt.engine", stt.name)
            span.set_attribute("vocalis.stt.streamed", True)
            if isinstance(stt, SegmentTranscriber):
                opened = await stt.transcribe_segments(pcm, STT_RATE, language)
                async for segment in opened.segments:
                    if segment.text:
                        delta = segment.text if not parts else " " + segment.text
                        parts.append(segment.text)
                        yield _event({"type": "transcript.text.delta", "delta": delta})
            else:  # an engine that answers whole: one delta
                transcript = await stt.transcribe(pcm, STT_RATE, language)
                if transcript.text:
                    parts.append(transcript.text)
                    yield _event({"type": "transcript.text.delta", "delta": transcript.text})
        _observe(stt.name, time.perf_counter() - started, duration_seconds(pcm, STT_RATE))
        yield _event({"type": "transcript.text.done", "text": " ".join(parts).strip()})
    except VocalisError as exc:
        log.warning("transcription_failed", code=exc.code, detail=exc.detail)
        yield _event({"type": "error", "error": openai_error(exc.code, exc.detail, exc.status)})
    except Exception:
        log.exception("transcription_failed")
        error = openai_error(INTERNAL_ERROR, "Internal server error", 500)
        yield _event({"type": "error", "error": error})


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


@router.post(
    "/audio/transcriptions",
    openapi_extra=rate_limit_class("uploads"),
    responses={
        200: {
            "description": "The transcript: JSON (`json`, `verbose_json`) or text "
            "(`text`, `srt`, `vtt`); with `stream=true`, `transcript.text.delta` server-sent "
            "events (one per decoded segment) and a last `transcript.text.done`.",
            "content": {
                "application/json": {"example": {"text": "I would like to book a table."}},
                "text/plain": {"schema": {"type": "string"}},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        },
        **error_responses(
            INVALID_AUDIO,
            UNSUPPORTED_AUDIO_FORMAT,
            AUDIO_PARAMETER_UNSUPPORTED,
            AUDIO_MODEL_NOT_FOUND,
            status_400="The file is not decodable audio, or a parameter is refused.",
            status_404="Unknown `model`.",
        ),
    },
    summary="Transcribe an audio file (OpenAI-compatible)",
)
async def create_transcription(
    principal: Annotated[Principal, Scoped("conversations:write")],
    backends: BackendsDep,
    file: Annotated[UploadFile, File(description="Audio: WAV, or MP3/OGG/FLAC/WebM/M4A.")],
    model: Annotated[str, Form(max_length=64)],
    language: Annotated[str | None, Form(max_length=16)] = None,
    prompt: Annotated[str | None, Form(max_length=4000)] = None,
    response_format: Annotated[TranscriptionFormat, Form()] = "json",
    temperature: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
    stream: Annotated[bool, Form()] = False,
    timestamp_granularities: Annotated[
        list[TimestampGranularity] | None,
        Form(
            alias="timestamp_granularities[]",
            description="`word` and/or `segment` (with `verbose_json`; default `segment`).",
        ),
    ] = None,
) -> Any:
    """Speech to text with the configured engine (`prompt` and `temperature` are accepted)."""
    settings = backends.settings
    _check_model(model, STT_ALIASES, _stt_models(settings))
    granularities: set[str] = set(timestamp_granularities or ())
    if granularities and response_format != "verbose_json":
        raise _refused(
            "timestamp_granularities",
            "`timestamp_granularities` needs `response_format` `verbose_json`.",
        )
    if stream and response_format not in ("json", "text"):
        raise _refused("stream", "A streamed transcript comes as text: use `json` or `text`.")
    data = await file.read()
    pcm, engines = await _decode(backends, principal.org_id, data)
    if stream:
        return StreamingResponse(
            _transcript_events(engines, principal.org_id, pcm, language or None),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    words = "word" in granularities
    if words and not isinstance(engines.stt, SegmentTranscriber):
        raise _refused(
            "timestamp_granularities",
            f"The configured speech-to-text engine ({engines.stt.name}) gives no word times.",
        )
    transcript, _ = await _run_stt(
        engines, principal.org_id, pcm, language or None, words=words, translate=False
    )
    duration = duration_seconds(pcm, STT_RATE)
    return _respond(transcript, duration, response_format, granularities)


@router.post(
    "/audio/translations",
    openapi_extra=rate_limit_class("uploads"),
    responses={
        200: {
            "description": "English text of the speech: JSON (`json`, `verbose_json`) or text "
            "(`text`, `srt`, `vtt`).",
            "content": {
                "application/json": {"example": {"text": "I would like to book a table."}},
                "text/plain": {"schema": {"type": "string"}},
            },
        },
        **error_responses(
            INVALID_AUDIO,
            UNSUPPORTED_AUDIO_FORMAT,
            AUDIO_MODEL_NOT_FOUND,
            status_400="The file is not decodable audio.",
            status_404="Unknown `model`.",
        ),
    },
    summary="Translate speech into English text (OpenAI-compatible)",
)
async def create_translation(
    principal: Annotated[Principal, Scoped("conversations:write")],
    backends: BackendsDep,
    file: Annotated[UploadFile, File(description="Audio: WAV, or MP3/OGG/FLAC/WebM/M4A.")],
    model: Annotated[str, Form(max_length=64)],
    prompt: Annotated[str | None, Form(max_length=4000)] = None,
    response_format: Annotated[TranscriptionFormat, Form()] = "json",
    temperature: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
) -> Any:
    """Speech in any language the engine understands, as English text. An English-only model
    (the packaged `tiny.en`) hears English only: its translation is the English transcript."""
    settings = backends.settings
    _check_model(model, STT_ALIASES, _stt_models(settings))
    data = await file.read()
    pcm, engines = await _decode(backends, principal.org_id, data)
    stt = engines.stt
    if not isinstance(stt, SegmentTranscriber):
        raise _refused(
            "model", f"The configured speech-to-text engine ({stt.name}) does not translate."
        )
    multilingual = await asyncio.to_thread(stt.can_translate)
    transcript, _ = await _run_stt(
        engines, principal.org_id, pcm, None if multilingual else "en", words=False, translate=True
    )
    if not multilingual:
        transcript = Transcript(transcript.text, "en", transcript.duration, transcript.segments)
    duration = duration_seconds(pcm, STT_RATE)
    return _respond(transcript, duration, response_format, set(), task="translate")


# --- speech -------------------------------------------------------------------------------
class SpeechRequest(BaseModel):
    """`POST /v1/audio/speech` (OpenAI's shape)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(max_length=64)
    input: str = Field(min_length=1, max_length=4096)
    voice: str = Field(default="default", max_length=64)
    response_format: Literal["wav", "pcm", "mp3", "opus", "aac", "flac"] = "wav"
    speed: float = Field(default=1.0, ge=0.25, le=4.0, description="Accepted; not applied.")
    instructions: str | None = Field(default=None, max_length=4096)
    stream_format: Literal["audio", "sse"] = "audio"


@router.post(
    "/audio/speech",
    openapi_extra=rate_limit_class("chat_turns"),
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Audio, streamed as it is synthesised: a WAV stream or raw "
            "PCM16 mono at 24 kHz.",
            "content": {"audio/wav": {}, "audio/pcm": {}},
        },
        **error_responses(
            AUDIO_PARAMETER_UNSUPPORTED,
            AUDIO_MODEL_NOT_FOUND,
            status_400="An output format other than `wav` or `pcm`.",
            status_404="Unknown `model`.",
        ),
    },
    summary="Synthesise speech (OpenAI-compatible)",
)
async def create_speech(
    body: SpeechRequest,
    principal: Annotated[Principal, Scoped("conversations:write")],
    backends: BackendsDep,
) -> StreamingResponse:
    """Text to speech with the configured engine, streamed."""
    _check_model(body.model, TTS_ALIASES, _tts_models(backends.settings))
    if body.response_format not in MEDIA_TYPES or body.stream_format != "audio":
        raise _with_openai_error(
            UnsupportedAudioFormat(
                "Speech is produced as `wav` or `pcm` audio streams "
                f"(not {body.response_format!r}, stream_format {body.stream_format!r})."
            )
        )
    try:
        engines = await backends.voice.get()
    except VocalisError as exc:
        raise _with_openai_error(exc) from None
    tts = engines.tts
    voice = body.voice if body.voice in tts.voices else None
    chunks = _speech_stream(tts, body.input, voice, wav=body.response_format == "wav")
    return StreamingResponse(
        chunks,
        media_type=MEDIA_TYPES[body.response_format],
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _speech_stream(
    tts: Any, text: str, voice: str | None, *, wav: bool
) -> AsyncIterator[bytes]:
    """PCM16 at 24 kHz (after a streaming WAV header) as the engine produces it."""
    if wav:
        yield wav_header(SPEECH_RATE)
    resampler = Resampler(tts.sample_rate, SPEECH_RATE)
    started, first = time.perf_counter(), True
    with tracer().start_as_current_span("tts.synthesize") as span:
        span.set_attribute("vocalis.tts.engine", tts.name)
        async for chunk in tts.synthesize_stream(text, voice):
            out = resampler.push(chunk)
            if out:
                if first:
                    first = False
                    TTS_TIME_TO_FIRST_BYTE.labels(tts.name).observe(time.perf_counter() - started)
                yield out
        tail = resampler.flush()
        if tail:
            yield tail


# --- recordings ---------------------------------------------------------------------------
@router.get(
    "/conversations/{conversation_id}/recordings/{name}",
    response_class=Response,
    responses={
        200: {"description": "The recording (WAV).", "content": {"audio/wav": {}}},
        404: {"description": "No such conversation or recording."},
    },
    summary="Download the recording of one side of a voice turn",
)
async def get_recording(
    conversation_id: str,
    name: str,
    principal: Annotated[Principal, Scoped("conversations:read")],
    backends: BackendsDep,
) -> Response:
    """`{turn:06d}-{user|agent}.wav`, as linked from the message's `recording`."""
    await conversations.get_conversation(
        backends, org_id=principal.org_id, conversation_id=conversation_id
    )
    match = _RECORDING_NAME.match(name)
    if match is None:
        raise NotFound(f"No recording {name!r}.")
    key = object_keys.recording(
        principal.org_id, conversation_id, int(match.group(1)), match.group(2)
    )
    try:
        data = await backends.objects.get(key)
    except ObjectNotFound:
        raise NotFound(f"No recording {name!r}.") from None
    return Response(content=data, media_type="audio/wav")

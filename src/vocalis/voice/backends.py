"""The speech engines chosen by the settings, built lazily and loaded once per process.

`voice_engines(backends)` is the one factory: it picks the STT, TTS and VAD adapters from
the `voice_*` settings, loads models in a worker thread (never on the event loop) and
caches the result on `backends.extras[ENGINES_EXTRA]` (tests may put their own engines
there). Offline engines hold no event-loop state, so they are also shared process-wide by
configuration: every app in the process loads whisper once. Engines that talk HTTP
(OpenAI-compatible endpoints) are built per `Backends`, because their clients belong to
one event loop.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from pathlib import Path
from typing import Any

import structlog

from vocalis.core.backends import Backends
from vocalis.core.errors import BackendUnavailable
from vocalis.ports.stt import SpeechToText
from vocalis.ports.tts import TextToSpeech
from vocalis.ports.vad import VoiceActivityDetector
from vocalis.settings import Settings
from vocalis.voice.pipeline import VoiceEngines

log = structlog.get_logger(__name__)

ENGINES_EXTRA = "voice_engines"
PACKAGED_WHISPER = "tiny.en"

_offline: dict[tuple[Any, ...], Any] = {}
_offline_lock = threading.Lock()
_LOCK_EXTRA = "voice_engines_lock"


def _shared(key: tuple[Any, ...], build: Any) -> Any:
    """One instance per key and process (built under a lock, in the calling thread)."""
    with _offline_lock:
        if key not in _offline:
            _offline[key] = build()
        return _offline[key]


def _whisper(settings: Settings) -> SpeechToText:
    from vocalis.adapters.faster_whisper_stt import FasterWhisperSTT

    model = settings.voice_whisper_model.strip()
    model_dir = None if model in ("", PACKAGED_WHISPER) else Path(model)
    if model_dir is not None and not model_dir.is_dir():
        raise BackendUnavailable(
            f"VOCALIS_VOICE_WHISPER_MODEL must be {PACKAGED_WHISPER!r} or a model directory; "
            f"{model!r} is neither."
        )

    def build() -> FasterWhisperSTT:
        stt = FasterWhisperSTT(model_dir, beam_size=settings.voice_whisper_beam_size)
        stt.load()  # verifies checksums, then loads: seconds of CPU, never on the event loop
        return stt

    stt: SpeechToText = _shared(("whisper", model, settings.voice_whisper_beam_size), build)
    return stt


def _espeak(settings: Settings) -> TextToSpeech:
    from vocalis.adapters.espeak_tts import EspeakTTS

    voice = settings.voice_default_voice or "en-us"
    tts: TextToSpeech = _shared(("espeak", voice), lambda: EspeakTTS(voice))
    return tts


def _piper(settings: Settings) -> TextToSpeech:
    try:
        module = importlib.import_module("vocalis.adapters.piper_tts")
    except ImportError as exc:
        raise BackendUnavailable(
            "VOCALIS_VOICE_TTS_ENGINE=piper needs the Piper adapter and `piper-tts` with a "
            "voice installed."
        ) from exc
    voice = settings.voice_default_voice or None
    tts: TextToSpeech = _shared(("piper", voice), lambda: module.PiperTTS(default_voice=voice))
    return tts


def _silero() -> VoiceActivityDetector:
    from vocalis.adapters.silero_vad import SileroVAD

    vad: VoiceActivityDetector = _shared(("silero",), SileroVAD)
    return vad


def _build(settings: Settings, api_key: str | None) -> VoiceEngines:
    """Blocking: construct (and load) the configured engines."""
    stt: SpeechToText
    tts: TextToSpeech
    base_url = settings.voice_openai_base_url or None
    if settings.voice_stt_engine == "openai":
        from vocalis.adapters.openai_stt import OpenAISTT

        stt = OpenAISTT(base_url=base_url, api_key=api_key, model=settings.voice_openai_stt_model)
    else:
        stt = _whisper(settings)
    if settings.voice_tts_engine == "openai":
        from vocalis.adapters.openai_tts import OpenAITTS

        tts = OpenAITTS(
            base_url=base_url,
            api_key=api_key,
            model=settings.voice_openai_tts_model,
            default_voice=settings.voice_default_voice or "alloy",
        )
    elif settings.voice_tts_engine == "piper":
        tts = _piper(settings)
    else:
        tts = _espeak(settings)
    return VoiceEngines(stt=stt, tts=tts, vad=_silero())


def _lock(backends: Backends) -> asyncio.Lock:
    """So that concurrent first sessions build the engines once."""
    lock = backends.extras.setdefault(_LOCK_EXTRA, asyncio.Lock())
    assert isinstance(lock, asyncio.Lock)
    return lock


async def voice_engines(backends: Backends) -> VoiceEngines:
    """The process's speech engines (built and loaded on first use)."""
    cached = backends.extras.get(ENGINES_EXTRA)
    if isinstance(cached, VoiceEngines):
        return cached
    async with _lock(backends):
        cached = backends.extras.get(ENGINES_EXTRA)
        if isinstance(cached, VoiceEngines):
            return cached
        settings = backends.settings
        api_key = None
        if "openai" in (settings.voice_stt_engine, settings.voice_tts_engine):
            api_key = await backends.secrets.get_optional(settings.voice_openai_api_key_secret)
        try:
            engines = await asyncio.to_thread(_build, settings, api_key)
        except BackendUnavailable:
            raise
        except Exception as exc:  # a missing package, a bad checksum, an unloadable library
            log.exception("voice_engines_unavailable")
            raise BackendUnavailable(f"The voice engines could not be loaded: {exc}") from exc
        log.info("voice_engines_ready", stt=engines.stt.name, tts=engines.tts.name)
        backends.extras[ENGINES_EXTRA] = engines
        return engines

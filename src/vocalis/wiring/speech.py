"""The speech-engine registry: for each kind (STT, TTS, VAD, turn detector), name → engine.

Adding an engine is one adapter module plus one `register` line at the bottom of this file;
`vocalis docs` lists every registered engine, and the engine contract suite
(`tests/contract/test_speech_engines.py`) runs against each one. The composition root calls
`build_voice_engines` once per process (it blocks: run it in a worker thread).

Offline engines hold no event-loop state, so they are shared process-wide by configuration:
every app in the process loads whisper once, and the adapters verify model checksums before
loading. Remote engines (HTTP clients bound to one event loop) are built on every call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import structlog

from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.adapters.faster_whisper_stt import (
    PACKAGED_MODELS,
    UTTERANCE_WINDOW_S,
    FasterWhisperSTT,
)
from vocalis.adapters.hibari_tts import HibariTTS
from vocalis.adapters.openai_stt import OpenAISTT
from vocalis.adapters.openai_tts import OpenAITTS
from vocalis.adapters.piper_tts import PiperTTS
from vocalis.adapters.silence_turn import SilenceTurnDetector
from vocalis.adapters.silero_vad import SileroVAD
from vocalis.adapters.smart_turn import SmartTurnDetector
from vocalis.agents import extractive
from vocalis.core.errors import BackendUnavailable
from vocalis.core.lazy import Lazy
from vocalis.ports.speech import TurnDetector, VoiceEngines
from vocalis.ports.stt import SpeechToText
from vocalis.ports.tts import TextToSpeech
from vocalis.ports.vad import VoiceActivityDetector
from vocalis.settings import Settings
from vocalis.voice.phrases import PhraseCache, warm_up

log = structlog.get_logger(__name__)

EngineKind = Literal["stt", "tts", "vad", "turn"]
Engine = TypeVar("Engine")
EngineFactory = Callable[[Settings, str | None], Engine]

PACKAGED_WHISPER = "tiny.en"
PROJECT_LICENCE = "Apache-2.0"


@dataclass(frozen=True)
class EngineSpec(Generic[Engine]):
    """One registered engine: how to build it (settings, API key) and what the docs say."""

    kind: EngineKind
    name: str
    factory: EngineFactory[Engine]
    offline: bool
    description: str
    licence: str


class EngineRegistry(Generic[Engine]):
    """The engines of one kind, by name; `setting` is the `Settings` field that picks one."""

    def __init__(self, kind: EngineKind, title: str, setting: str) -> None:
        self.kind, self.title, self.setting = kind, title, setting
        self._specs: dict[str, EngineSpec[Engine]] = {}

    def register(
        self,
        name: str,
        factory: EngineFactory[Engine],
        *,
        offline: bool,
        description: str,
        licence: str,
    ) -> None:
        """Make `name` a valid value of the kind's setting."""
        if name in self._specs:
            raise ValueError(f"{self.title} engine {name!r} is registered twice")
        self._specs[name] = EngineSpec(self.kind, name, factory, offline, description, licence)

    def names(self) -> list[str]:
        """Registered engine names, sorted."""
        return sorted(self._specs)

    def __iter__(self) -> Iterator[EngineSpec[Engine]]:
        return iter(self._specs[name] for name in self.names())

    def __getitem__(self, name: str) -> EngineSpec[Engine]:
        return self._specs[name]

    @property
    def variable(self) -> str:
        """The environment variable that picks the engine."""
        return f"VOCALIS_{self.setting.upper()}"

    def configured(self, settings: Settings) -> EngineSpec[Engine]:
        """The engine the settings pick; an unknown name lists the registered ones."""
        name = str(getattr(settings, self.setting))
        spec = self._specs.get(name)
        if spec is None:
            raise BackendUnavailable(
                f"{self.variable}={name!r} is not a registered {self.title} engine; "
                f"use one of: {', '.join(self.names())}."
            )
        return spec

    def build(self, settings: Settings, api_key: str | None) -> Engine:
        """Build (or reuse) the configured engine; any failure is a `BackendUnavailable`."""
        spec = self.configured(settings)
        try:
            return spec.factory(settings, api_key)
        except BackendUnavailable:
            raise
        except Exception as exc:  # a missing package, a bad checksum, an unloadable library
            log.exception("speech_engine_unavailable", kind=self.kind, engine=spec.name)
            raise BackendUnavailable(
                f"The {self.title} engine {spec.name!r} could not be loaded: {exc}"
            ) from exc


# --- process-wide sharing of offline engines ------------------------------------------------
_offline: dict[Hashable, Any] = {}
_offline_lock = threading.Lock()


def _shared(key: Hashable, build: Callable[[], Engine]) -> Engine:
    """One instance per key and process (built under a lock, in the calling thread)."""
    with _offline_lock:
        if key not in _offline:
            _offline[key] = build()
        engine: Engine = _offline[key]
        return engine


# --- factories ------------------------------------------------------------------------------
def _whisper(
    model_setting: str,
    model: str,
    beam_size: int,
    language: str,
    threads: int = 1,
    *,
    utterance_window_s: float | None = UTTERANCE_WINDOW_S,
) -> SpeechToText:
    """The shared faster-whisper engine for a packaged model name or a model directory."""
    model = model.strip() or PACKAGED_WHISPER
    packaged = model if model in PACKAGED_MODELS else None
    model_dir = None if packaged else Path(model)
    if model_dir is not None and not model_dir.is_dir():
        raise BackendUnavailable(
            f"VOCALIS_{model_setting.upper()} must be one of {', '.join(PACKAGED_MODELS)} or a "
            f"model directory; {model!r} is neither."
        )

    def load() -> FasterWhisperSTT:
        stt = FasterWhisperSTT(
            model_dir,
            packaged=packaged or PACKAGED_WHISPER,
            beam_size=beam_size,
            default_language=language.strip() or None,
            cpu_threads=threads,  # intra-op threads: the speech models do not compete
            utterance_window_s=utterance_window_s,
        )
        stt.load()  # verifies checksums, then loads: seconds of CPU, never on the event loop
        return stt

    key = ("faster-whisper", packaged, model_dir, beam_size, language, threads, utterance_window_s)
    return _shared(key, load)


def _faster_whisper(settings: Settings, _api_key: str | None) -> SpeechToText:
    return _whisper(
        "voice_whisper_model",
        settings.voice_whisper_model,
        settings.voice_whisper_beam_size,
        settings.voice_whisper_language,
        settings.voice_engine_threads,
    )


def _openai_stt(settings: Settings, api_key: str | None) -> SpeechToText:
    return OpenAISTT(
        base_url=settings.voice_openai_base_url or None,
        api_key=api_key,
        model=settings.voice_openai_stt_model,
    )


def _espeak(settings: Settings, _api_key: str | None) -> TextToSpeech:
    voice = settings.voice_default_voice or "en-us"
    return _shared(("espeak", voice), lambda: EspeakTTS(voice))


def _hibari(_settings: Settings, _api_key: str | None) -> TextToSpeech:
    return _shared(("hibari",), HibariTTS)


def _piper(_settings: Settings, _api_key: str | None) -> TextToSpeech:
    return _shared(("piper",), PiperTTS)


def _openai_tts(settings: Settings, api_key: str | None) -> TextToSpeech:
    return OpenAITTS(
        base_url=settings.voice_openai_base_url or None,
        api_key=api_key,
        model=settings.voice_openai_tts_model,
        default_voice=settings.voice_default_voice or "alloy",
    )


def _silero(_settings: Settings, _api_key: str | None) -> VoiceActivityDetector:
    return _shared(("silero",), SileroVAD)


def _silence(_settings: Settings, _api_key: str | None) -> TurnDetector:
    return SilenceTurnDetector()


def _smart_turn(settings: Settings, _api_key: str | None) -> TurnDetector:
    # Verifies the checksum, loads (one intra-op thread by default) and warms up, once.
    threads = settings.voice_engine_threads
    return _shared(("smart-turn", threads), lambda: SmartTurnDetector(threads=threads))


# --- the registries -------------------------------------------------------------------------
STT_ENGINES = EngineRegistry[SpeechToText]("stt", "speech-to-text", "voice_stt_engine")
TTS_ENGINES = EngineRegistry[TextToSpeech]("tts", "text-to-speech", "voice_tts_engine")
VAD_ENGINES = EngineRegistry[VoiceActivityDetector](
    "vad", "voice-activity detection", "voice_vad_engine"
)
TURN_DETECTORS = EngineRegistry[TurnDetector]("turn", "turn detection", "voice_turn_detector")
REGISTRIES: tuple[EngineRegistry[Any], ...] = (
    STT_ENGINES,
    TTS_ENGINES,
    VAD_ENGINES,
    TURN_DETECTORS,
)

STT_ENGINES.register(
    "faster-whisper",
    _faster_whisper,
    offline=True,
    description="Whisper on CTranslate2, CPU int8: the packaged tiny.en weights or a "
    "configured model directory (`VOCALIS_VOICE_WHISPER_MODEL`), checksum-verified.",
    licence="MIT (faster-whisper, Whisper weights)",
)
STT_ENGINES.register(
    "openai",
    _openai_stt,
    offline=False,
    description="Any OpenAI-compatible `POST /v1/audio/transcriptions` "
    "(`VOCALIS_VOICE_OPENAI_BASE_URL`): OpenAI, Groq, speaches, vLLM, another Vocalis.",
    licence="the provider's terms",
)
TTS_ENGINES.register(
    "espeak",
    _espeak,
    offline=True,
    description="espeak-ng voices at 22.05 kHz, loaded from `espeakng-loader` "
    "(an optional component).",
    licence="GPL-3.0-or-later (espeak-ng)",
)
TTS_ENGINES.register(
    "hibari",
    _hibari,
    offline=True,
    description="hibari's natural American English voice (`heart`, a Kokoro-82M distillation) "
    "at 24 kHz, inside the `hibari-tts` wheel, checksum-verified; one intra-op thread, "
    "streamed sentence by sentence.",
    licence="Apache-2.0 (hibari-tts code and model)",
)
TTS_ENGINES.register(
    "piper",
    _piper,
    offline=True,
    description="Piper with the `joe` US English voice (male) at 22.05 kHz, checksum-verified; "
    "an optional extra (`vocalis[voice-piper]`), one intra-op thread.",
    licence="GPL-3.0-or-later (piper-tts, its bundled espeak-ng); voice data CC0",
)
TTS_ENGINES.register(
    "openai",
    _openai_tts,
    offline=False,
    description="Any OpenAI-compatible `POST /v1/audio/speech`, streamed as 24 kHz PCM16 "
    "(`VOCALIS_VOICE_OPENAI_BASE_URL`).",
    licence="the provider's terms",
)
VAD_ENGINES.register(
    "silero",
    _silero,
    offline=True,
    description="Silero VAD v6 (ONNX, the copy faster-whisper ships), 32 ms windows at "
    "16 kHz, checksum-verified.",
    licence="MIT",
)
TURN_DETECTORS.register(
    "silence",
    _silence,
    offline=True,
    description="The VAD's end-of-turn silence alone ends the turn (probability 1.0 at "
    "every pause).",
    licence=PROJECT_LICENCE,
)
TURN_DETECTORS.register(
    "smart-turn",
    _smart_turn,
    offline=True,
    description="Smart Turn v3.2 (ONNX, 8.7 MB, the copy the `pipecat-ai==1.14.0` wheel "
    "ships, installed without its dependencies), checksum-verified, one intra-op thread, "
    "warmed at load: hears whether the user finished the sentence.",
    licence="BSD-2-Clause (Smart Turn weights, Daily)",
)


# --- what the composition root calls --------------------------------------------------------
def check_engine_names(settings: Settings) -> None:
    """Raise `BackendUnavailable` naming the registered engines if a setting names none."""
    for registry in REGISTRIES:
        registry.configured(settings)


def needs_api_key(settings: Settings) -> bool:
    """Whether a configured engine is remote (give `build_voice_engines` the audio API key)."""
    return any(not registry.configured(settings).offline for registry in REGISTRIES)


def build_voice_engines(settings: Settings, *, api_key: str | None) -> VoiceEngines:
    """Blocking: check the configured names, then build (and load) the engines they pick."""
    check_engine_names(settings)
    engines = VoiceEngines(
        stt=STT_ENGINES.build(settings, api_key),
        # Greetings and fixed phrases are spoken from memory after their first time.
        tts=PhraseCache(TTS_ENGINES.build(settings, api_key)),
        vad=VAD_ENGINES.build(settings, api_key),
        turn=TURN_DETECTORS.build(settings, api_key),
    )
    log.info(
        "voice_engines_ready",
        stt=engines.stt.name,
        tts=engines.tts.name,
        vad=engines.vad.name,
        turn=engines.turn.name if engines.turn else None,
    )
    return engines


def build_phone_stt(settings: Settings, *, api_key: str | None) -> SpeechToText:
    """Blocking: the speech-to-text engine for telephone-band (8 kHz G.711) calls.

    With the offline `faster-whisper` engine, the model is `voice_phone_whisper_model`
    (empty: the wideband model); any other configured engine serves calls as it is.
    """
    phone_model = settings.voice_phone_whisper_model.strip()
    if STT_ENGINES.configured(settings).name != "faster-whisper" or not phone_model:
        return STT_ENGINES.build(settings, api_key)
    try:
        return _whisper(
            "voice_phone_whisper_model",
            phone_model,
            settings.voice_whisper_beam_size,
            settings.voice_whisper_language,
            settings.voice_engine_threads,
            # Calls keep Whisper's full window: over 8 kHz G.711 the 10 s window cost words
            # (telephony end-to-end test: WER 0.18-0.29 against <= 0.15; docs 12).
            utterance_window_s=None,
        )
    except BackendUnavailable:
        raise
    except Exception as exc:  # a missing package, a bad checksum
        log.exception("speech_engine_unavailable", kind="stt", engine="faster-whisper (phone)")
        raise BackendUnavailable(
            f"The phone-band speech-to-text model {phone_model!r} could not be loaded: {exc}"
        ) from exc


# Replies the offline responder speaks word for word: warmed into the phrase cache.
FIXED_PHRASES = (
    extractive.GREETING_REPLY,
    extractive.THANKS_REPLY,
    extractive.GOODBYE_REPLY,
    extractive.HANDOFF_REPLY,
    extractive.NO_HANDOFF_REPLY,
    extractive.DONT_KNOW_REPLY,
)


def start_voice_warm_up(voice: Lazy[VoiceEngines]) -> asyncio.Task[None]:
    """Load the speech engines now and run each once (`voice.phrases.warm_up`) in the
    background, so the first caller pays no loading or first-inference cost."""

    async def warm() -> None:
        try:
            await warm_up(await voice.get(), FIXED_PHRASES)
        except Exception:  # the first call will load them (and report what is wrong)
            log.exception("voice_warm_up_failed")

    return asyncio.create_task(warm(), name="voice:warm-up")

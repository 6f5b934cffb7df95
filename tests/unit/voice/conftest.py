"""Offline voice engines, loaded once per test session."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest

from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.adapters.faster_whisper_stt import FasterWhisperSTT
from vocalis.adapters.silero_vad import SileroVAD
from vocalis.core.audio import resample
from vocalis.ports.tts import synthesize

Speak = Callable[[str], Awaitable[bytes]]


@pytest.fixture(scope="session")
def espeak() -> EspeakTTS:
    """The offline TTS engine (espeak-ng from PyPI)."""
    return EspeakTTS()


@pytest.fixture(scope="session")
def whisper() -> Iterator[FasterWhisperSTT]:
    """Whisper tiny.en, checksum-verified and loaded once."""
    stt = FasterWhisperSTT()
    stt.load()
    yield stt
    stt.close()


@pytest.fixture(scope="session")
def silero() -> SileroVAD:
    """The Silero VAD model shipped with faster-whisper."""
    return SileroVAD()


@pytest.fixture(scope="session")
def speak(espeak: EspeakTTS) -> Speak:
    """Synthesise English text as 16 kHz PCM16, the pipeline's input rate."""

    async def _speak(text: str) -> bytes:
        return resample(await synthesize(espeak, text), espeak.sample_rate, 16000)

    return _speak

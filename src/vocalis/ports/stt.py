"""Speech-to-text port: whole-utterance transcription, optionally cheap partials.

Adapters: `adapters/faster_whisper_stt.py` (offline default), `adapters/openai_stt.py`
(any OpenAI-compatible `/v1/audio/transcriptions`). Input is always mono PCM16.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class TranscriptWord:
    """One recognised word with its times in seconds from the audio start."""

    start: float
    end: float
    word: str


@dataclass(frozen=True)
class TranscriptSegment:
    """A stretch of recognised speech with its times in seconds from the audio start."""

    start: float
    end: float
    text: str
    words: tuple[TranscriptWord, ...] = ()  # only when word timestamps were asked for


@dataclass(frozen=True)
class Transcript:
    """The result of transcribing one utterance."""

    text: str
    language: str | None = None
    duration: float = 0.0
    segments: tuple[TranscriptSegment, ...] = field(default_factory=tuple)


@runtime_checkable
class SpeechToText(Protocol):
    """Turns an utterance into text; CPU-bound engines must not block the event loop."""

    name: str

    async def transcribe(
        self, pcm16: bytes, sample_rate: int, language: str | None = None
    ) -> Transcript:
        """Transcribe mono PCM16 at `sample_rate`; `language` is an ISO 639-1 hint."""
        ...


@runtime_checkable
class PartialTranscriber(Protocol):
    """An engine that can also give a quick, less accurate transcript of audio so far."""

    async def transcribe_partial(
        self, pcm16: bytes, sample_rate: int, language: str | None = None
    ) -> str:
        """A fast best-effort transcript of an utterance still in progress."""
        ...


@runtime_checkable
class UtteranceTranscriber(Protocol):
    """An engine with a faster path for a short live utterance (text, no timestamps)."""

    async def transcribe_utterance(
        self, pcm16: bytes, sample_rate: int, language: str | None = None
    ) -> Transcript:
        """Transcribe one short utterance as accurately as `transcribe`, sooner."""
        ...


@dataclass
class SegmentStream:
    """A recording being decoded: its language, then its segments as each is decoded."""

    language: str | None
    segments: AsyncIterator[TranscriptSegment]


@runtime_checkable
class SegmentTranscriber(Protocol):
    """An engine that decodes a recording segment by segment (for streamed transcripts), with
    word timestamps on request, and that may translate the speech into English."""

    def can_translate(self) -> bool:
        """Whether the model understands other languages than English (and can translate)."""
        ...

    async def transcribe_segments(
        self,
        pcm16: bytes,
        sample_rate: int,
        language: str | None = None,
        *,
        words: bool = False,
        translate: bool = False,
    ) -> SegmentStream:
        """Start decoding mono PCM16; `translate` gives English text of any language."""
        ...

"""Warm engines and cached phrases: no first-call penalty, no synthesis for fixed phrases.

`PhraseCache` wraps the process's TTS engine: a short text spoken once (an agent's greeting,
the fixed replies — goodbye, "I don't know", a handoff) is kept as audio and replayed from
memory the next time, in the same chunks. `warm_up` runs each engine once on throwaway
input at start-up (model loading, first-inference allocations, ONNX graph optimisation),
so the first caller does not pay for it, and speaks the fixed phrases into the cache.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence

import structlog

from vocalis.core.audio import silence
from vocalis.ports.speech import VoiceEngines
from vocalis.ports.tts import TextToSpeech, synthesize
from vocalis.voice.pipeline import speakable
from vocalis.voice.sentences import SentenceChunker

log = structlog.get_logger(__name__)

MAX_PHRASE_CHARS = 160  # longer texts are answers, not phrases: never cached
MAX_PHRASES = 128  # at 24 kHz about 30 MB of audio at most


class PhraseCache:
    """A `TextToSpeech` that keeps the audio of short texts it has spoken (LRU)."""

    def __init__(
        self,
        inner: TextToSpeech,
        *,
        max_phrases: int = MAX_PHRASES,
        max_chars: int = MAX_PHRASE_CHARS,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.sample_rate = inner.sample_rate
        self.default_voice = inner.default_voice
        self._max_phrases, self._max_chars = max_phrases, max_chars
        self._audio: OrderedDict[tuple[str, str | None], tuple[bytes, ...]] = OrderedDict()
        self.hits = 0

    @property
    def voices(self) -> Sequence[str]:
        """The wrapped engine's voices."""
        return self.inner.voices

    def _key(self, text: str, voice: str | None) -> tuple[str, str | None]:
        # Unknown voices fall back to the engine's default: they share its phrases.
        return text.strip(), voice if voice in self.inner.voices else None

    def cached(self, text: str, voice: str | None = None) -> bool:
        """Whether `text` in `voice` is held as audio."""
        return self._key(text, voice) in self._audio

    async def synthesize_stream(self, text: str, voice: str | None = None) -> AsyncIterator[bytes]:
        """The cached chunks of a phrase, or the engine's (kept when the text is short)."""
        key = self._key(text, voice)
        chunks = self._audio.get(key)
        if chunks is not None:
            self._audio.move_to_end(key)
            self.hits += 1
            for chunk in chunks:
                yield chunk
            return
        produced: list[bytes] = []
        stream = self.inner.synthesize_stream(text, voice)
        try:
            async for chunk in stream:
                produced.append(chunk)
                yield chunk
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        # Only a synthesis that ran to its end is kept (a cut-off one is incomplete).
        if len(key[0]) <= self._max_chars and produced:
            self._audio[key] = tuple(produced)
            while len(self._audio) > self._max_phrases:
                self._audio.popitem(last=False)


def spoken_sentences(text: str) -> list[str]:
    """The pieces a reply's text reaches the TTS engine in (a reply's sentence chunking)."""
    chunker = SentenceChunker()
    pieces = [*chunker.push(text), *chunker.flush()]
    return [speakable(piece) for piece in pieces if speakable(piece)]


async def warm_up(engines: VoiceEngines, phrases: Iterable[str] = ()) -> float:
    """Run every engine once on throwaway input and speak `phrases` into the TTS cache;
    returns the seconds it took."""
    started = time.perf_counter()
    quiet = silence(0.5, 16000)
    stream = engines.vad.new_stream()
    await asyncio.to_thread(stream.process, silence(0.1, engines.vad.sample_rate))
    await engines.stt.transcribe(quiet, 16000, None)
    if engines.turn is not None:
        await engines.turn.end_of_turn_probability(silence(0.5, engines.turn.sample_rate))
    await synthesize(engines.tts, "Hello.")
    for phrase in phrases:
        for sentence in spoken_sentences(phrase):  # as the pipeline will ask for them
            await synthesize(engines.tts, sentence)
    seconds = time.perf_counter() - started
    log.info("voice_engines_warm", seconds=round(seconds, 2))
    return seconds

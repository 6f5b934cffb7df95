"""Text-to-speech port: streamed synthesis so audio starts before a sentence is done.

Adapters: `adapters/hibari_tts.py` (offline default, Apache-2.0), `adapters/espeak_tts.py`
(offline fallback, GPL-3.0 engine), `adapters/piper_tts.py` (optional, GPL-3.0),
`adapters/openai_tts.py` (any OpenAI-compatible `/v1/audio/speech`). Output is always mono PCM16 at `sample_rate`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class TextToSpeech(Protocol):
    """Synthesises text into a stream of PCM16 chunks."""

    name: str
    sample_rate: int
    default_voice: str

    @property
    def voices(self) -> Sequence[str]:
        """Voice names this engine knows; any other name falls back to `default_voice`."""
        ...

    def synthesize_stream(self, text: str, voice: str | None = None) -> AsyncIterator[bytes]:
        """PCM16 chunks (each an even number of bytes) as they are produced.

        Closing the iterator early (`aclose`, or cancelling the consumer) stops synthesis.
        """
        ...


async def synthesize(tts: TextToSpeech, text: str, voice: str | None = None) -> bytes:
    """The whole utterance as one PCM16 buffer."""
    return b"".join([chunk async for chunk in tts.synthesize_stream(text, voice)])

"""Text-to-speech through any OpenAI-compatible `POST /v1/audio/speech`.

Requests `response_format=pcm` (raw 24 kHz mono PCM16, OpenAI's definition) and streams the
body, so the first audio arrives before the server finishes the sentence.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

import openai
from openai import AsyncOpenAI

from vocalis.core.errors import BackendUnavailable

OPENAI_PCM_RATE = 24000
OPENAI_VOICES: tuple[str, ...] = (
    "alloy",
    "ash",
    "ballad",
    "cedar",
    "coral",
    "echo",
    "fable",
    "marin",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
)


class OpenAITTS:
    """A remote speech endpoint; implements `TextToSpeech`."""

    name = "openai"
    sample_rate = OPENAI_PCM_RATE

    def __init__(
        self,
        client: AsyncOpenAI | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str = "tts-1",
        default_voice: str = "alloy",
        voices: Sequence[str] = OPENAI_VOICES,
        chunk_bytes: int = 4800,
        timeout: float = 30.0,
    ) -> None:
        self._client = client or AsyncOpenAI(
            base_url=base_url, api_key=api_key or "unused", timeout=timeout, max_retries=1
        )
        self.model = model
        self._voices = tuple(voices)
        self.default_voice = default_voice
        self._chunk_bytes = chunk_bytes

    @property
    def voices(self) -> Sequence[str]:
        """Voice names the server is configured to know."""
        return self._voices

    def resolve_voice(self, voice: str | None) -> str:
        """The voice that will speak: `voice` if known, else the default."""
        return voice if voice in self._voices else self.default_voice

    async def synthesize_stream(
        self, text: str, voice: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        """PCM16 chunks as the response body streams in (odd bytes carried to the next chunk)."""
        if not text.strip():
            return
        carry = b""
        try:
            async with self._client.audio.speech.with_streaming_response.create(
                model=self.model, voice=self.resolve_voice(voice), input=text, response_format="pcm"
            ) as response:
                async for chunk in response.iter_bytes(self._chunk_bytes):
                    data = carry + chunk
                    cut = len(data) - len(data) % 2
                    carry = data[cut:]
                    if cut:
                        yield data[:cut]
        except openai.APIError as exc:
            raise BackendUnavailable(f"speech endpoint failed: {exc}") from exc

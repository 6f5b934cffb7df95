"""Speech-to-text through any OpenAI-compatible `POST /v1/audio/transcriptions`.

Works with OpenAI, Groq, a faster-whisper-server, vLLM, LocalAI, or Vocalis itself. The
utterance is sent as a WAV file; `verbose_json` gives segment times where the server has them.
"""

from __future__ import annotations

from typing import Any, Literal

import openai
from openai import AsyncOpenAI

from vocalis.core.audio import check_pcm16, duration_seconds, wav_encode
from vocalis.core.errors import BackendUnavailable
from vocalis.ports.stt import Transcript, TranscriptSegment


class OpenAISTT:
    """A remote transcription endpoint; implements `SpeechToText`."""

    name = "openai"

    def __init__(
        self,
        client: AsyncOpenAI | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str = "whisper-1",
        response_format: Literal["verbose_json", "json"] = "verbose_json",
        timeout: float = 30.0,
    ) -> None:
        self._client = client or AsyncOpenAI(
            base_url=base_url, api_key=api_key or "unused", timeout=timeout, max_retries=1
        )
        self.model = model
        self._format = response_format

    async def transcribe(
        self, pcm16: bytes, sample_rate: int, language: str | None = None
    ) -> Transcript:
        """Upload the utterance as WAV and read the transcript back."""
        check_pcm16(pcm16)
        duration = duration_seconds(pcm16, sample_rate)
        if not pcm16:
            return Transcript(text="", language=language, duration=0.0)
        extra: dict[str, Any] = {"language": language} if language else {}
        try:
            result: Any = await self._client.audio.transcriptions.create(
                model=self.model,
                file=("audio.wav", wav_encode(pcm16, sample_rate), "audio/wav"),
                response_format=self._format,
                **extra,
            )
        except openai.APIError as exc:
            raise BackendUnavailable(f"transcription endpoint failed: {exc}") from exc
        return _to_transcript(result, language, duration)


def _to_transcript(result: Any, language: str | None, duration: float) -> Transcript:
    segments = tuple(
        TranscriptSegment(float(s.start), float(s.end), str(s.text).strip())
        for s in (getattr(result, "segments", None) or [])
    )
    return Transcript(
        text=str(getattr(result, "text", result)).strip(),
        language=getattr(result, "language", None) or language,
        duration=float(getattr(result, "duration", None) or duration),
        segments=segments,
    )

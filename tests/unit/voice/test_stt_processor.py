"""VAD + STT: turns of synthesised speech become final (and partial) transcripts."""

from __future__ import annotations

from tests.unit.voice.conftest import Speak
from tests.unit.voice.pipeline_helpers import audio_frames, next_of, of_type, run_to_end
from vocalis.adapters.faster_whisper_stt import FasterWhisperSTT
from vocalis.adapters.silero_vad import SileroVAD
from vocalis.core.audio import silence
from vocalis.voice.frames import (
    AudioIn,
    Frame,
    MetricFrame,
    SpeechStopped,
    TranscriptFinal,
    TranscriptPartial,
)
from vocalis.voice.processors import EndpointingConfig, Pipeline, STTProcessor, VADProcessor
from vocalis.voice.wer import word_error_rate

QUESTION = "How long does shipping take to Canada?"


async def test_a_spoken_turn_becomes_a_final_transcript_with_its_audio(
    silero: SileroVAD, whisper: FasterWhisperSTT, speak: Speak
) -> None:
    pcm = silence(0.8, 16000) + await speak(QUESTION) + silence(1.0, 16000)
    async with Pipeline([VADProcessor(silero), STTProcessor(whisper)]) as pipeline:
        out = await run_to_end(pipeline, audio_frames(pcm))
    [final] = of_type(out, TranscriptFinal)
    assert word_error_rate([QUESTION], [final.text]) <= 0.15
    assert 2.0 < len(final.audio) / 32000 < len(pcm) / 32000  # the turn, not the whole stream
    assert {m.name for m in of_type(out, MetricFrame)} >= {"stt_seconds", "stt_real_time_factor"}
    assert of_type(out, AudioIn) == []  # user audio stops at the STT stage


async def test_a_turn_that_is_too_short_is_not_transcribed(
    silero: SileroVAD, whisper: FasterWhisperSTT, speak: Speak
) -> None:
    burst = (await speak(QUESTION))[16000:24000]
    config = EndpointingConfig(start_ms=64, min_speech_ms=600)
    async with Pipeline([VADProcessor(silero, config), STTProcessor(whisper)]) as pipeline:
        out = await run_to_end(
            pipeline, audio_frames(silence(0.5, 16000) + burst + silence(1.0, 16000))
        )
    assert of_type(out, TranscriptFinal) == []


async def test_partial_transcripts_arrive_while_the_user_is_still_speaking(
    silero: SileroVAD, whisper: FasterWhisperSTT, speak: Speak
) -> None:
    speech = await speak("Please tell me the opening hours of the London office.")
    seen: list[Frame] = []
    async with Pipeline(
        [VADProcessor(silero), STTProcessor(whisper, partial_interval_ms=500)]
    ) as pipeline:
        for frame in audio_frames(silence(0.5, 16000) + speech):
            await pipeline.queue_frame(frame)
        partial = await next_of(pipeline, TranscriptPartial, seen)  # no end of turn yet
        assert of_type(seen, SpeechStopped) == []  # the user is still mid-turn
        out = await run_to_end(pipeline, audio_frames(silence(1.0, 16000)))
    # A partial of the first half second is a guess ("Please" or "Sleep."), but it is text.
    assert partial.text.strip()
    [final] = of_type(out, TranscriptFinal)
    assert "london" in final.text.lower()

"""Agent → sentences → TTS → playout, with a scripted agent and the real offline TTS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.unit.voice.conftest import Speak
from tests.unit.voice.pipeline_helpers import audio_frames, next_of, of_type, run_to_end
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.adapters.faster_whisper_stt import FasterWhisperSTT
from vocalis.adapters.silero_vad import SileroVAD
from vocalis.core.audio import silence
from vocalis.voice.frames import (
    BargeIn,
    EndOfResponse,
    Frame,
    MetricFrame,
    ResponseSpoken,
    TranscriptFinal,
    TTSAudio,
    TTSSentenceStart,
)
from vocalis.voice.pipeline import ConversationAgentProcessor, ReplyRequest
from vocalis.voice.processors import (
    AudioPlayout,
    EndpointingConfig,
    FrameProcessor,
    Pipeline,
    SentenceChunkerProcessor,
    STTProcessor,
    TTSProcessor,
    VADProcessor,
    spoken_text,
)

REPLY = (
    "Our refund policy is simple. You can return any undamaged item within thirty days. "
    "We refund the full price to your original payment method. "
    "Damaged items are replaced free of charge, and we also pay for the return shipping."
)
BARGE_IN_BOUND_MS = 300  # playout lead (200 ms) + at most one TTS chunk (100 ms) in flight


class ScriptedAgent:
    """Streams a fixed reply word by word, like an LLM; records whether it was cut off."""

    def __init__(self, reply: str = REPLY, seconds_per_word: float = 0.02) -> None:
        self.reply, self.seconds_per_word = reply, seconds_per_word
        self.heard: list[str] = []
        self.finished = self.closed = False

    async def __call__(self, request: ReplyRequest) -> AsyncIterator[str]:
        self.heard.append(request.text)
        self.finished = self.closed = False
        try:
            for word in self.reply.split(" "):
                await asyncio.sleep(self.seconds_per_word)
                yield word + " "
            self.finished = True
        finally:
            self.closed = True

    def processor(self) -> ConversationAgentProcessor:
        """The agent stage, answering every final transcript with this script."""
        return ConversationAgentProcessor(
            self, auto_respond=lambda: True, modalities=lambda: ("audio",)
        )


def reply_pipeline(agent: ScriptedAgent, espeak: EspeakTTS, *, realtime: bool = True) -> Pipeline:
    return Pipeline(
        [
            agent.processor(),
            SentenceChunkerProcessor(),
            TTSProcessor(espeak, sample_rate=24000),
            AudioPlayout(lead_ms=200, realtime=realtime),
        ]
    )


def audio_ms(frames: list[Frame]) -> float:
    return sum(f.duration_ms for f in of_type(frames, TTSAudio))


async def test_the_reply_is_spoken_sentence_by_sentence_while_the_agent_still_generates(
    espeak: EspeakTTS,
) -> None:
    agent = ScriptedAgent(seconds_per_word=0.03)
    seen: list[Frame] = []
    async with reply_pipeline(agent, espeak, realtime=False) as pipeline:
        await pipeline.queue_frame(TranscriptFinal(text="What is your refund policy?"))
        first_audio = await next_of(pipeline, TTSAudio, seen)
        assert not agent.finished  # audio started before the agent finished its reply
        out = seen + await run_to_end(pipeline, [])
    assert first_audio.sample_rate == 24000 and len(first_audio.pcm) % 2 == 0
    assert [s.text for s in of_type(out, TTSSentenceStart)][:2] == [
        "Our refund policy is simple.",
        "You can return any undamaged item within thirty days.",
    ]
    [spoken] = of_type(out, ResponseSpoken)
    assert spoken.text == REPLY and not spoken.interrupted
    assert spoken.audio_ms == pytest.approx(audio_ms(out))
    assert 8_000 < spoken.audio_ms < 20_000  # ~36 words of speech
    assert out.index(spoken) < out.index(of_type(out, EndOfResponse)[0])


async def test_barge_in_stops_the_audio_within_the_bound_and_keeps_only_what_was_heard(
    espeak: EspeakTTS,
) -> None:
    agent = ScriptedAgent(seconds_per_word=0.06)  # still generating when the user cuts in
    seen: list[Frame] = []
    async with reply_pipeline(agent, espeak) as pipeline:
        await pipeline.queue_frame(TranscriptFinal(text="What is your refund policy?"))
        await next_of(pipeline, TTSAudio, seen)
        first_audio_at = time.monotonic()
        await asyncio.sleep(1.2)
        barged_at = time.monotonic()
        await pipeline.queue_frame(BargeIn())
        await next_of(pipeline, BargeIn, seen)
        interruption_out_ms = (time.monotonic() - barged_at) * 1000
        out = seen + await run_to_end(pipeline, [], timeout=5)
    after_barge_in = out[out.index(of_type(out, BargeIn)[0]) :]
    assert of_type(after_barge_in, TTSAudio) == []  # not one more byte of agent audio
    assert interruption_out_ms < 100
    [spoken] = of_type(out, ResponseSpoken)
    heard_ms = (barged_at - first_audio_at) * 1000
    assert spoken.interrupted
    assert spoken.audio_ms == pytest.approx(heard_ms, abs=100)
    # Audio already sent but not yet played when the user spoke: the client's buffer.
    assert audio_ms(out) - spoken.audio_ms <= BARGE_IN_BOUND_MS
    assert 0 < len(spoken.text) < len(REPLY) and REPLY.startswith(spoken.text)
    assert agent.closed and not agent.finished  # generation was cancelled too
    assert of_type(out, EndOfResponse) == []
    assert [m.name for m in of_type(out, MetricFrame)].count("barge_ins") == 1


async def test_a_barge_in_with_no_reply_playing_changes_nothing(espeak: EspeakTTS) -> None:
    async with reply_pipeline(ScriptedAgent(), espeak) as pipeline:
        out = await run_to_end(pipeline, [BargeIn()])
    assert [type(f).__name__ for f in out] == ["BargeIn"]


def test_spoken_text_counts_whole_sentences_then_a_share_of_the_next() -> None:
    sentences = [("One two three.", 0.0, 1000.0), ("Four five six seven.", 1000.0, 2000.0)]
    assert spoken_text(sentences, 500) == "One"
    assert spoken_text(sentences, 1000) == "One two three."
    assert spoken_text(sentences, 2000) == "One two three. Four five"
    assert spoken_text(sentences, 5000) == "One two three. Four five six seven."
    assert spoken_text(sentences, 0) == ""


async def test_speech_during_the_reply_interrupts_it_and_starts_a_new_turn(
    silero: SileroVAD, whisper: FasterWhisperSTT, espeak: EspeakTTS, speak: Speak
) -> None:
    agent = ScriptedAgent()
    metrics: list[tuple[str, str, float]] = []
    processors: list[FrameProcessor] = [
        # onset_ms=0: the VAD barges in itself (no interruption arbiter in this hand-built
        # pipeline; the arbiter's own tests are tests/voice/test_interruption_arbiter.py).
        VADProcessor(silero, EndpointingConfig(onset_ms=0)),
        STTProcessor(whisper),
        agent.processor(),
        SentenceChunkerProcessor(),
        TTSProcessor(espeak),
        AudioPlayout(),
    ]
    seen: list[Frame] = []
    async with Pipeline(processors, metrics_observer=lambda *m: metrics.append(m)) as pipeline:
        question = (
            silence(0.5, 16000) + await speak("What is your refund policy?") + silence(0.8, 16000)
        )
        for frame in audio_frames(question):
            await pipeline.queue_frame(frame)
        await next_of(pipeline, TTSAudio, seen)
        await asyncio.sleep(0.5)
        agent.reply = "Of course."
        cut_in = await speak("Wait, how long does shipping take?")
        for frame in audio_frames(cut_in + silence(0.8, 16000)):
            await pipeline.queue_frame(frame)
        await next_of(pipeline, BargeIn, seen)
        out = seen + await run_to_end(pipeline, [], timeout=15)
    interrupted, answered = of_type(out, ResponseSpoken)
    assert interrupted.interrupted and REPLY.startswith(interrupted.text)
    assert answered.text == "Of course." and not answered.interrupted
    assert "shipping" in agent.heard[1].lower()
    names = {name for _, name, _ in metrics}
    assert {
        "endpointing_seconds",
        "stt_seconds",
        "first_token_seconds",
        "tts_ttfb_seconds",
    } <= names

"""The production pipeline, assembled as a conversation assembles it: frames in, frames out.

Real offline engines (Silero VAD, whisper tiny.en, espeak-ng); the agent is scripted (the
LLM is the only edge faked).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from tests.unit.voice.conftest import Speak
from tests.unit.voice.pipeline_helpers import audio_frames, of_type, run_to_end
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.adapters.faster_whisper_stt import FasterWhisperSTT
from vocalis.adapters.silero_vad import SileroVAD
from vocalis.core.audio import silence
from vocalis.ports.speech import VoiceEngines
from vocalis.voice.frames import (
    BargeIn,
    EndOfResponse,
    Frame,
    LLMTextDelta,
    ResponseSpoken,
    SpeechStopped,
    TranscriptFinal,
    TTSAudio,
    TTSSentenceStart,
)
from vocalis.voice.pipeline import (
    CommittedTurn,
    ReplyRequest,
    RespondRequest,
    UserSpeechStarted,
    VoicePipeline,
    VoiceResponseStarted,
    build_voice_pipeline,
    endpointing_config,
)
from vocalis.voice.processors import FrameProcessor
from vocalis.voice.wer import word_error_rate

QUESTION = "What is your refund policy?"
REPLY = "Refunds are given within thirty days. Keep your receipt."
IDS = {"vocalis.org_id": "org_1", "vocalis.agent_id": "agt_1", "vocalis.conversation_id": "cnv_1"}


class ScriptedAgent:
    """The LLM edge: answers every request with `REPLY`, word by word."""

    def __init__(self) -> None:
        self.requests: list[ReplyRequest] = []

    async def __call__(self, request: ReplyRequest) -> AsyncIterator[str | Frame]:
        self.requests.append(request)
        for word in REPLY.split(" "):
            yield word + " "


def assemble(
    engines: VoiceEngines,
    agent: ScriptedAgent,
    *,
    auto_respond: bool = True,
    modalities: Sequence[str] = ("audio",),
) -> VoicePipeline:
    """The pipeline a voice conversation builds, ending in a pass-through output."""
    return build_voice_pipeline(
        engines,
        runner=agent,
        transport_out=FrameProcessor(name="output"),
        auto_respond=lambda: auto_respond,
        modalities=lambda: tuple(modalities),
        endpointing=endpointing_config(
            threshold=0.5, silence_ms=500, prefix_padding_ms=300, min_speech_ms=250, interrupt=True
        ),
        output_rate=24000,
        language="en",
        realtime=False,
        span_attributes=IDS,
    )


def first(frames: list[Frame], kind: type[Frame]) -> int:
    """Where the first frame of `kind` is."""
    return next(i for i, f in enumerate(frames) if isinstance(f, kind))


async def test_a_spoken_question_comes_out_as_a_turn_a_transcript_and_a_spoken_reply_in_order(
    silero: SileroVAD, whisper: FasterWhisperSTT, espeak: EspeakTTS, speak: Speak
) -> None:
    agent = ScriptedAgent()
    voice = assemble(VoiceEngines(stt=whisper, tts=espeak, vad=silero), agent)
    pcm = silence(0.5, 16000) + await speak(QUESTION) + silence(1.0, 16000)
    async with voice.pipeline as pipeline:
        out = await run_to_end(pipeline, audio_frames(pcm))
    # No BargeIn: nothing was playing, so the interruption arbiter has nothing to cut off.
    assert not of_type(out, BargeIn)
    order = [
        UserSpeechStarted,
        SpeechStopped,
        TranscriptFinal,
        VoiceResponseStarted,
        LLMTextDelta,
        TTSSentenceStart,
        TTSAudio,
        ResponseSpoken,
        EndOfResponse,
    ]
    missing = [kind.__name__ for kind in order if not of_type(out, kind)]
    assert not missing, f"no {missing} in {[type(f).__name__ for f in out]}"
    assert [first(out, kind) for kind in order] == sorted(first(out, kind) for kind in order)
    assert out.index(of_type(out, TTSAudio)[-1]) < first(out, ResponseSpoken)
    [stopped], [final], [started] = (
        of_type(out, SpeechStopped),
        of_type(out, TranscriptFinal),
        of_type(out, VoiceResponseStarted),
    )
    assert word_error_rate([QUESTION], [final.text]) <= 0.15
    assert stopped.turn is not None and final.turn is stopped.turn and started.turn is stopped.turn
    assert set(stopped.turn.latency_ms) >= {"endpointing", "stt"}
    assert started.user_item_id == of_type(out, UserSpeechStarted)[0].item_id
    [request] = agent.requests
    assert request.text == final.text.strip() and request.turn is stopped.turn
    [spoken] = of_type(out, ResponseSpoken)
    assert spoken.text == REPLY and not spoken.interrupted
    assert [s.text for s in of_type(out, TTSSentenceStart)] == [
        "Refunds are given within thirty days.",
        "Keep your receipt.",
    ]
    assert all(a.sample_rate == 24000 for a in of_type(out, TTSAudio))


async def test_a_committed_turn_skips_the_vad_and_waits_for_a_respond_request(
    silero: SileroVAD, whisper: FasterWhisperSTT, espeak: EspeakTTS, speak: Speak
) -> None:
    agent = ScriptedAgent()
    voice = assemble(VoiceEngines(stt=whisper, tts=espeak, vad=silero), agent, auto_respond=False)
    pcm = await speak(QUESTION)
    await voice.start()
    try:
        await voice.feed_turn(
            UserSpeechStarted(audio_start_ms=0.0, preroll=pcm, sample_rate=16000, detected=False)
        )
        await voice.feed_turn(
            CommittedTurn(audio_end_ms=len(pcm) / 32.0, speech_ms=len(pcm) / 32.0, silence_ms=0.0)
        )
        await voice.feed_turn(RespondRequest())
        out = await run_to_end(voice.pipeline, [])
    finally:
        await voice.stop()
    assert of_type(out, BargeIn) == []  # no VAD ran
    assert first(out, TranscriptFinal) < first(out, VoiceResponseStarted) < first(out, TTSAudio)
    [request] = agent.requests
    assert word_error_rate([QUESTION], [request.text]) <= 0.15


async def test_a_text_only_reply_is_streamed_as_text_and_never_synthesised(
    silero: SileroVAD, whisper: FasterWhisperSTT, espeak: EspeakTTS, speak: Speak
) -> None:
    agent = ScriptedAgent()
    voice = assemble(VoiceEngines(stt=whisper, tts=espeak, vad=silero), agent, modalities=("text",))
    pcm = silence(0.5, 16000) + await speak(QUESTION) + silence(1.0, 16000)
    async with voice.pipeline as pipeline:
        out = await run_to_end(pipeline, audio_frames(pcm))
    [started] = of_type(out, VoiceResponseStarted)
    assert not started.speaks
    assert "".join(d.text for d in of_type(out, LLMTextDelta)).strip() == REPLY
    assert of_type(out, TTSAudio) == [] and of_type(out, TTSSentenceStart) == []

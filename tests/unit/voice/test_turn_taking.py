"""Model-based end of turn: Smart Turn on real (espeak-ng) speech decides how long to wait.

Speech is fed as fast as it comes; the silence after it is fed at real-time pace in 20 ms
frames (as from an open microphone), so the model's decision time counts as it does in a
call.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.voice.conftest import Speak
from tests.unit.voice.pipeline_helpers import audio_frames, of_type
from vocalis.adapters.faster_whisper_stt import FasterWhisperSTT
from vocalis.adapters.silero_vad import SileroVAD
from vocalis.adapters.smart_turn import SmartTurnDetector, log_mel_features
from vocalis.core.audio import pcm16_to_float32, silence
from vocalis.ports.speech import TurnDetector
from vocalis.realtime.protocol import Session
from vocalis.realtime.voice_serializer import voice_settings
from vocalis.voice.completeness import Words, words_verdict
from vocalis.voice.frames import EndFrame, Frame, MetricFrame, SpeechStopped, TranscriptFinal
from vocalis.voice.pipeline import TurnModelConfig
from vocalis.voice.processors import (
    EndpointingConfig,
    FrameProcessor,
    Pipeline,
    STTProcessor,
    VADProcessor,
    turn_wait_ms,
    turn_wait_with_words,
)
from vocalis.voice.wer import word_error_rate

FINISHED = "How long does shipping to Canada take?"
UNFINISHED = "I want to change my"
CONTINUATION = "billing address."
MODEL = EndpointingConfig(turn_decision_ms=200.0, turn_threshold=0.8, max_silence_ms=3000.0)


@pytest.fixture(scope="module")
def smart_turn() -> SmartTurnDetector:
    """The model, checksum-verified, loaded and warmed once."""
    return SmartTurnDetector()


async def turns(
    silero: SileroVAD,
    detector: TurnDetector | None,
    speech: bytes,
    silence_s: float,
    config: EndpointingConfig = MODEL,
) -> list[Frame]:
    """Feed `speech` at once, then `silence_s` of silence at real-time pace; all output."""
    return await feed([VADProcessor(silero, config, turn=detector)], speech, silence_s)


async def feed(stages: list[FrameProcessor], speech: bytes, silence_s: float) -> list[Frame]:
    """Through `stages`: `speech` at once, then `silence_s` of silence in real time."""
    loop = asyncio.get_running_loop()
    async with Pipeline(stages) as pipeline:
        for frame in audio_frames(silence(0.3, 16000) + speech):
            await pipeline.queue_frame(frame)
        started = loop.time()
        for index, frame in enumerate(audio_frames(silence(silence_s, 16000))):
            await asyncio.sleep(max(0.0, started + index * 0.02 - loop.time()))
            await pipeline.queue_frame(frame)
        await pipeline.queue_frame(EndFrame())
        out: list[Frame] = []
        while not isinstance(frame := await asyncio.wait_for(pipeline.output.get(), 30), EndFrame):
            out.append(frame)
        return out


def test_the_wait_grows_as_the_probability_falls_up_to_the_cap() -> None:
    waits = [turn_wait_ms(p, MODEL) for p in (0.95, 0.8, 0.7, 0.4, 0.1, 0.0)]
    assert waits[:2] == [200.0, 200.0]  # at or above the threshold: end at the decision
    assert waits == sorted(waits) and len(set(waits[1:])) == 5
    assert waits[-1] == MODEL.max_silence_ms


def test_the_features_match_whisper_s_log_mel_recipe() -> None:
    # The reference implementation pipecat vendors from transformers (test-only import).
    import numpy as np
    from pipecat.audio.turn.smart_turn._whisper_features import compute_whisper_log_mel_features

    rng = np.random.default_rng(3)
    audio = (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32)
    padded = np.pad(audio, (16000 * 8 - audio.size, 0))
    np.testing.assert_allclose(
        log_mel_features(audio), compute_whisper_log_mel_features(padded), atol=1e-5
    )


async def test_the_model_hears_a_finished_question_and_an_unfinished_phrase(
    smart_turn: SmartTurnDetector, speak: Speak
) -> None:
    pause = silence(0.2, 16000)  # what the VAD hands over: the speech and the pause so far
    finished = await smart_turn.end_of_turn_probability(await speak(FINISHED) + pause)
    unfinished = await smart_turn.end_of_turn_probability(await speak(UNFINISHED) + pause)
    assert finished >= 0.8 and unfinished <= 0.2, (finished, unfinished)
    assert smart_turn.warm_up_seconds > 0
    assert pcm16_to_float32(b"").size == 0
    assert 0.0 <= await smart_turn.end_of_turn_probability(b"") <= 1.0


async def test_a_finished_question_ends_the_turn_at_the_decision(
    silero: SileroVAD, smart_turn: SmartTurnDetector, speak: Speak
) -> None:
    out = await turns(silero, smart_turn, await speak(FINISHED), 2.0)
    [stopped] = of_type(out, SpeechStopped)
    assert stopped.turn_probability is not None and stopped.turn_probability >= 0.8
    assert stopped.turn_decision_ms is not None and stopped.turn_decision_ms > 0
    # Ended as the decision came back (the audio queued meanwhile, on a busy machine, is
    # classified first: a few windows of slack), not after a wait.
    assert stopped.silence_ms <= 200 + stopped.turn_decision_ms + 250, stopped
    assert stopped.silence_ms < turn_wait_ms(0.7, MODEL)
    names = [frame.name for frame in of_type(out, MetricFrame)]
    assert "turn_decision_seconds" in names and "turn_decisions_end" in names


async def test_an_unfinished_phrase_waits_as_long_as_the_model_asks(
    silero: SileroVAD, smart_turn: SmartTurnDetector, speak: Speak
) -> None:
    out = await turns(silero, smart_turn, await speak(UNFINISHED), 3.5)
    [stopped] = of_type(out, SpeechStopped)
    assert stopped.turn_probability is not None and stopped.turn_probability < 0.5
    assert stopped.silence_ms >= turn_wait_ms(stopped.turn_probability, MODEL) >= 1500
    assert "turn_decisions_wait" in [frame.name for frame in of_type(out, MetricFrame)]


async def test_a_hesitation_pause_does_not_end_the_turn(
    silero: SileroVAD, smart_turn: SmartTurnDetector, speak: Speak
) -> None:
    speech = await speak(UNFINISHED) + silence(0.8, 16000) + await speak(CONTINUATION)
    # The whole utterance at real-time pace: the pause is decided while it happens.
    loop = asyncio.get_running_loop()
    async with Pipeline([VADProcessor(silero, MODEL, turn=smart_turn)]) as pipeline:
        frames = audio_frames(silence(0.3, 16000) + speech + silence(2.5, 16000))
        started = loop.time()
        for index, frame in enumerate(frames):
            await asyncio.sleep(max(0.0, started + index * 0.02 - loop.time()))
            await pipeline.queue_frame(frame)
        await pipeline.queue_frame(EndFrame())
        out: list[Frame] = []
        while not isinstance(frame := await asyncio.wait_for(pipeline.output.get(), 30), EndFrame):
            out.append(frame)
    [stopped] = of_type(out, SpeechStopped)  # one turn: not cut at the pause
    assert stopped.accepted
    assert stopped.audio_end_ms > 300 + len(speech) / 32 - 400  # ends after the continuation


async def test_the_cap_ends_a_turn_the_model_thinks_unfinished(
    silero: SileroVAD, smart_turn: SmartTurnDetector, speak: Speak
) -> None:
    capped = EndpointingConfig(turn_decision_ms=200.0, turn_threshold=0.8, max_silence_ms=800.0)
    out = await turns(silero, smart_turn, await speak(UNFINISHED), 1.5, capped)
    [stopped] = of_type(out, SpeechStopped)
    assert 800 <= stopped.silence_ms < 900


async def test_without_a_decision_silence_alone_ends_the_turn(
    silero: SileroVAD, smart_turn: SmartTurnDetector, speak: Speak
) -> None:
    # server_vad: the detector is there but not asked; the 500 ms silence ends the turn.
    out = await turns(silero, smart_turn, await speak(UNFINISHED), 1.2, EndpointingConfig())
    [stopped] = of_type(out, SpeechStopped)
    assert stopped.turn_probability is None and stopped.turn_decision_ms is None
    assert 500 <= stopped.silence_ms < 600


class _BrokenDetector:
    """Fault injection: a turn detector whose model raises."""

    name = "broken"
    sample_rate = 16000

    async def end_of_turn_probability(self, pcm16: bytes) -> float:
        raise RuntimeError("model crashed")


async def test_a_failing_model_leaves_the_decision_to_silence(
    silero: SileroVAD, speak: Speak
) -> None:
    config = EndpointingConfig(turn_decision_ms=200.0, stop_silence_ms=600.0)
    out = await turns(silero, _BrokenDetector(), await speak(FINISHED), 1.5, config)
    [stopped] = of_type(out, SpeechStopped)
    assert stopped.turn_probability is None
    assert 600 <= stopped.silence_ms < 700
    assert "turn_decisions_failed" in [frame.name for frame in of_type(out, MetricFrame)]


def test_eagerness_moves_the_threshold_and_the_cap() -> None:
    base = TurnModelConfig(decision_ms=200.0, threshold=0.9, max_silence_ms=3000.0)
    high, low = base.at_eagerness("high"), base.at_eagerness("low")
    assert base.at_eagerness("auto") == base.at_eagerness("medium") == base
    assert high.threshold < base.threshold < low.threshold < 1.0
    assert high.max_silence_ms < base.max_silence_ms < low.max_silence_ms
    assert {high.decision_ms, low.decision_ms} == {200.0}


def test_semantic_vad_asks_the_model_and_server_vad_does_not() -> None:
    semantic = Session.model_validate(
        {
            "id": "sess_1",
            "model": "agt_1",
            "audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "low"}}},
        }
    )
    server = Session.model_validate(
        {
            "id": "sess_2",
            "model": "agt_1",
            "audio": {"input": {"turn_detection": {"type": "server_vad"}}},
        }
    )
    semantic_detection = voice_settings(semantic).turn_detection
    server_detection = voice_settings(server).turn_detection
    assert semantic_detection is not None and semantic_detection.eagerness == "low"
    assert server_detection is not None and server_detection.eagerness is None


class _FixedDetector:
    """A turn model that always answers `probability`: isolates how the words' verdict
    combines with the model's (the real model's answers on espeak speech vary by phrase)."""

    name = "fixed"
    sample_rate = 16000

    def __init__(self, probability: float) -> None:
        self.probability = probability

    async def end_of_turn_probability(self, pcm16: bytes) -> float:
        return self.probability


# Speculation reports the pause at 150 ms: its transcript (real Whisper) reaches the VAD as
# a `TurnTextHint` around the model's decision at 200 ms; a decision to end waits for it
# (here up to 1 s, so that a slow machine's transcription still counts).
WORDS = EndpointingConfig(
    turn_decision_ms=200.0,
    turn_threshold=0.9,
    max_silence_ms=3000.0,
    pause_ms=150.0,
    text_hint_wait_ms=1000.0,
)


async def words_and_model(
    silero: SileroVAD, whisper: FasterWhisperSTT, probability: float, speech: bytes
) -> list[Frame]:
    """VAD (a fixed model) then real STT at the pause; 3 s of silence at real-time pace."""
    stages = [VADProcessor(silero, WORDS, turn=_FixedDetector(probability)), STTProcessor(whisper)]
    return await feed(stages, speech, 3.2)


async def test_words_that_cannot_end_a_turn_overrule_a_confident_model(
    silero: SileroVAD, whisper: FasterWhisperSTT, speak: Speak
) -> None:
    out = await words_and_model(silero, whisper, 0.97, await speak("I have a question about"))
    [stopped] = of_type(out, SpeechStopped)
    assert stopped.silence_ms >= WORDS.incomplete_wait_ms, stopped
    assert "turn_text_incomplete" in [frame.name for frame in of_type(out, MetricFrame)]


async def test_a_finished_question_ends_the_turn_although_the_model_hesitates(
    silero: SileroVAD, whisper: FasterWhisperSTT, speak: Speak
) -> None:
    # Smart Turn gives some finished questions in a flat synthetic voice 0.1 (docs 12).
    out = await words_and_model(silero, whisper, 0.1, await speak(FINISHED))
    [stopped] = of_type(out, SpeechStopped)
    # The model alone would wait turn_wait_ms(0.1) (~2.8 s); the question mark ends it now.
    assert stopped.silence_ms < 800 < turn_wait_ms(0.1, WORDS), stopped
    assert "turn_text_complete" in [frame.name for frame in of_type(out, MetricFrame)]


async def test_a_verb_waiting_for_its_object_holds_the_turn_a_little(
    silero: SileroVAD, whisper: FasterWhisperSTT, speak: Speak
) -> None:
    out = await words_and_model(silero, whisper, 0.97, await speak("I need to update"))
    [stopped] = of_type(out, SpeechStopped)
    # Long enough for "... my billing address" after a breath; shorter than a dangling word.
    assert WORDS.open_wait_ms <= stopped.silence_ms < WORDS.incomplete_wait_ms, stopped
    assert "turn_text_open" in [frame.name for frame in of_type(out, MetricFrame)]


async def test_without_an_opinion_from_the_words_the_model_decides(
    silero: SileroVAD, whisper: FasterWhisperSTT, speak: Speak
) -> None:
    out = await words_and_model(silero, whisper, 0.97, await speak("I want to change my plan."))
    [stopped] = of_type(out, SpeechStopped)
    assert stopped.silence_ms < 800, stopped  # a confident model ends a plain statement


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("How long does shipping to Canada take?", Words.COMPLETE),
        ("When is the support line open?", Words.COMPLETE),
        # A question word and an auxiliary first: a question whatever Whisper's full stop,
        # not a clause opened by "when" (which held the turn 1.5 s in the benchmark).
        ("When is the support line open.", Words.COMPLETE),
        ("Where's my parcel.", Words.COMPLETE),
        ("How do I reset my password.", Words.COMPLETE),
        # An auxiliary and then its subject: a yes/no question, whatever the punctuation.
        ("Are returns free.", Words.COMPLETE),
        ("Do you deliver on Saturdays.", Words.COMPLETE),
        ("Is it not working.", Words.COMPLETE),
        ("Is not working.", Words.NONE),  # no subject after the auxiliary
        ("could you help me", Words.NONE),  # a modal request often only announces it
        ("Do you have", Words.OPEN),  # ... but "have" still waits for its object
        ("What do you have?", Words.COMPLETE),  # the object came first
        ("When is the", Words.INCOMPLETE),
        ("When I was young.", Words.INCOMPLETE),
        ("When you get a chance", Words.INCOMPLETE),
        ("What I really need is", Words.INCOMPLETE),
        ("How much does it cost.", Words.NONE),
        ("Do you ship to Spain?", Words.COMPLETE),  # a name after "to" is no verb
        ("Can I talk to you?", Words.COMPLETE),
        ("Can you tell me about", Words.INCOMPLETE),
        ("I have a question about.", Words.INCOMPLETE),
        ("My husband and I", Words.INCOMPLETE),
        ("We moved house and...", Words.INCOMPLETE),
        ("So basically,", Words.INCOMPLETE),
        ("Before I forget", Words.INCOMPLETE),
        ("What are you looking at?", Words.INCOMPLETE),
        # A verb still waiting for its object: may be finished, may go on.
        ("I need to update.", Words.OPEN),
        ("How much does it cost to see?", Words.OPEN),
        ("Could you check?", Words.OPEN),
        ("Can I upgrade?", Words.OPEN),
        ("My husband and I should", Words.OPEN),
        ("Yes, I can.", Words.OPEN),  # finished, but a modal often goes on: 1 s, not 1.5
        # A verb of giving or telling with only its first object: the thing is to come.
        ("Could you send me?", Words.OPEN),
        ("Can you tell us.", Words.OPEN),
        ("Could you send them?", Words.COMPLETE),  # "them" can be the thing sent
        ("Could you send me a copy of the contract?", Words.COMPLETE),
        ("Can you help me?", Words.COMPLETE),
        ("Could you call me back?", Words.COMPLETE),
        # A verb of getting right after its subject: its object is still to come ...
        ("Last week I ordered.", Words.OPEN),
        ("Yesterday we bought", Words.OPEN),
        # ... unless the object came first, or there is one.
        ("I want to return the jacket I bought.", Words.NONE),
        ("That is what we ordered.", Words.NONE),
        ("Last week I ordered two pairs of shoes.", Words.NONE),
        ("Can I speak to a manager?", Words.COMPLETE),
        ("Could you check my balance?", Words.COMPLETE),
        ("Before I forget, can you check my balance?", Words.COMPLETE),
        ("I'd like to cancel my roaming add-on.", Words.NONE),
        ("I want to go home.", Words.NONE),
        ("My order number is 456.", Words.NONE),  # ends on the number, not on "is"
        ("My order number is", Words.INCOMPLETE),
        ("It costs $4.50.", Words.NONE),
        ("Are you open from nine to five?", Words.COMPLETE),
        ("Can I pay up to 50?", Words.COMPLETE),
        ("Thank you.", Words.NONE),
        ("", Words.NONE),
    ],
)
def test_what_the_words_say_about_the_turn(text: str, verdict: Words) -> None:
    assert words_verdict(text) is verdict
    assert words_verdict(text, "de") is Words.NONE  # English rules only


def test_the_words_move_the_models_wait_within_the_cap() -> None:
    cfg = EndpointingConfig(turn_decision_ms=200.0, turn_threshold=0.8, max_silence_ms=3000.0)
    sure, unsure = 0.95, 0.3
    assert turn_wait_with_words(sure, None, cfg) == turn_wait_with_words(sure, Words.NONE, cfg)
    assert turn_wait_with_words(sure, Words.NONE, cfg) == 200.0
    assert turn_wait_with_words(sure, Words.INCOMPLETE, cfg) == cfg.incomplete_wait_ms
    assert turn_wait_with_words(sure, Words.OPEN, cfg) == cfg.open_wait_ms
    # Words never shorten what the model already asks beyond them, and the cap holds.
    assert turn_wait_with_words(unsure, Words.OPEN, cfg) == turn_wait_ms(unsure, cfg) > 1000
    assert turn_wait_with_words(0.0, Words.INCOMPLETE, cfg) == cfg.max_silence_ms
    # A finished question ends at the decision unless the model is all but sure it is not.
    assert turn_wait_with_words(0.1, Words.COMPLETE, cfg) == 200.0
    assert turn_wait_with_words(0.01, Words.COMPLETE, cfg) == turn_wait_ms(0.01, cfg)


class _Recording:
    """Real Whisper, remembering the length of each live utterance it was given."""

    name = "recording-whisper"

    def __init__(self, whisper: FasterWhisperSTT) -> None:
        self.whisper = whisper
        self.lengths: list[int] = []

    async def transcribe(self, pcm16: bytes, sample_rate: int, language: str | None = None):  # type: ignore[no-untyped-def]
        self.lengths.append(len(pcm16))
        return await self.whisper.transcribe(pcm16, sample_rate, language)

    async def transcribe_utterance(  # type: ignore[no-untyped-def]
        self, pcm16: bytes, sample_rate: int, language: str | None = None
    ):
        self.lengths.append(len(pcm16))
        return await self.whisper.transcribe_utterance(pcm16, sample_rate, language)


async def test_a_turn_resumed_after_a_pause_is_transcribed_whole_at_its_next_pause(
    silero: SileroVAD, whisper: FasterWhisperSTT, speak: Speak
) -> None:
    # "How long does shipping | to Canada take?": transcribed as two segments, Whisper
    # sometimes finishes the first ("... shipping take") and the stitched turn doubles a
    # word (a phone test heard "shipping take to Canada take"). The second pause
    # transcribes the turn so far whole instead, so no seam reaches the speculative reply,
    # the words' verdict or the kept transcript.
    first, rest = await speak("How long does shipping"), await speak("to Canada take?")
    stt = _Recording(whisper)
    stages = [VADProcessor(silero, WORDS, turn=_FixedDetector(0.1)), STTProcessor(stt)]  # type: ignore[arg-type]
    out = await feed(stages, first + silence(0.6, 16000) + rest, 3.2)
    [stopped] = of_type(out, SpeechStopped)
    finals = of_type(out, TranscriptFinal)
    assert len(stt.lengths) == 2, stt.lengths  # one per pause; the end confirms the second
    assert stt.lengths[1] > len(first) + len(rest), stt.lengths  # the whole turn, not the tail
    assert [final.speculative for final in finals] == [True, True, False]
    assert finals[-1].confirms_speculation and finals[-1].text == finals[1].text
    assert word_error_rate([FINISHED], [finals[-1].text]) <= 0.15, finals[-1].text
    assert stopped.accepted

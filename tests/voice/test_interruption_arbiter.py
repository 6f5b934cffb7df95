"""The interruption arbiter's decisions, frame by frame (the end-to-end behaviour with real
engines is in test_speculation_and_interruptions.py; here the timed paths)."""

from __future__ import annotations

import asyncio

from vocalis.voice.frames import (
    BargeIn,
    Frame,
    MetricFrame,
    PausePlayback,
    ResumePlayback,
    SpeechOnset,
    SpeechStopped,
    TranscriptFinal,
)
from vocalis.voice.pipeline import (
    InterruptionArbiter,
    InterruptionConfig,
    UserSpeechStarted,
    interrupting_words,
)
from vocalis.voice.processors import Pipeline

FALSE_MS = 80.0


async def drain(pipe: Pipeline, wait_s: float) -> list[Frame]:
    """What left the arbiter within `wait_s` (its measurements aside)."""
    await asyncio.sleep(wait_s)
    frames = []
    while not pipe.output.empty():
        frame = pipe.output.get_nowait()
        if not isinstance(frame, MetricFrame):
            frames.append(frame)
    return frames


def kinds(frames: list[Frame]) -> list[str]:
    return [type(f).__name__ for f in frames]


def arbiter(replying: bool = True) -> InterruptionArbiter:
    return InterruptionArbiter(
        replying=lambda: replying, config=InterruptionConfig(false_interruption_ms=FALSE_MS)
    )


async def test_no_words_within_the_configured_time_resumes_the_answer() -> None:
    async with Pipeline([arbiter()]) as pipe:
        await pipe.queue_frame(SpeechOnset())
        assert kinds(await drain(pipe, 0.01)) == ["PausePlayback"]
        assert kinds(await drain(pipe, FALSE_MS / 1000 * 2)) == ["ResumePlayback"]


async def test_an_onset_that_comes_to_nothing_resumes_after_the_grace() -> None:
    # The false-interruption deadline is far away here: only the onset's grace resumes.
    config = InterruptionConfig(false_interruption_ms=5000.0, onset_grace_ms=100.0)
    async with Pipeline([InterruptionArbiter(replying=lambda: True, config=config)]) as pipe:
        await pipe.queue_frame(SpeechOnset())
        await pipe.queue_frame(SpeechOnset(cancelled=True))
        assert kinds(await drain(pipe, 0.05)) == ["PausePlayback"]  # not resumed at once
        assert kinds(await drain(pipe, 0.2)) == ["ResumePlayback"]


async def test_speech_that_comes_back_within_the_grace_keeps_the_answer_held() -> None:
    # A word whose first sound dips below the VAD's threshold: onset, cancelled, onset again.
    config = InterruptionConfig(false_interruption_ms=5000.0, onset_grace_ms=100.0)
    async with Pipeline([InterruptionArbiter(replying=lambda: True, config=config)]) as pipe:
        await pipe.queue_frame(SpeechOnset())
        await pipe.queue_frame(SpeechOnset(cancelled=True))
        await asyncio.sleep(0.03)
        await pipe.queue_frame(SpeechOnset())
        assert kinds(await drain(pipe, 0.3)) == ["PausePlayback"]  # still held: no resume
        await pipe.queue_frame(SpeechOnset(long=True))
        assert kinds(await drain(pipe, 0.05)) == ["BargeIn"]


async def test_a_turn_too_short_to_count_then_more_speech_keeps_the_answer_held() -> None:
    # "Wait," (too short to be a turn), a comma's pause, then the sentence: one interruption.
    config = InterruptionConfig(false_interruption_ms=5000.0, onset_grace_ms=100.0)
    async with Pipeline([InterruptionArbiter(replying=lambda: True, config=config)]) as pipe:
        await pipe.queue_frame(SpeechOnset())
        await pipe.queue_frame(
            UserSpeechStarted(audio_start_ms=0.0, preroll=b"", sample_rate=16000)
        )
        short = SpeechStopped(audio_end_ms=300.0, speech_ms=120.0, silence_ms=200.0)
        short.accepted = False
        await pipe.queue_frame(short)
        await asyncio.sleep(0.03)
        await pipe.queue_frame(SpeechOnset())
        assert "ResumePlayback" not in kinds(await drain(pipe, 0.3))
        await pipe.queue_frame(SpeechOnset(cancelled=True))  # and nothing more: resumes
        assert "ResumePlayback" in kinds(await drain(pipe, 0.3))


async def test_words_that_come_after_the_resume_still_cut_the_answer_off() -> None:
    async with Pipeline([arbiter()]) as pipe:
        await pipe.queue_frame(SpeechOnset())
        await pipe.queue_frame(
            UserSpeechStarted(audio_start_ms=0.0, preroll=b"", sample_rate=16000)
        )
        await pipe.queue_frame(SpeechStopped(audio_end_ms=500.0, speech_ms=400.0, silence_ms=500.0))
        frames = await drain(pipe, FALSE_MS / 1000 * 2)  # the transcript is late
        assert [f for f in frames if isinstance(f, PausePlayback | ResumePlayback)] == [
            frames[0],
            frames[-1],
        ]
        assert isinstance(frames[-1], ResumePlayback)
        await pipe.queue_frame(TranscriptFinal(text="Wait, stop, that's wrong."))
        frames = await drain(pipe, 0.02)
        assert isinstance(frames[0], BargeIn)
        assert isinstance(frames[1], TranscriptFinal) and not frames[1].backchannel


async def test_a_backchannel_transcript_is_marked_and_not_an_interruption() -> None:
    async with Pipeline([arbiter()]) as pipe:
        await pipe.queue_frame(SpeechOnset())
        await pipe.queue_frame(
            UserSpeechStarted(audio_start_ms=0.0, preroll=b"", sample_rate=16000)
        )
        await pipe.queue_frame(SpeechStopped(audio_end_ms=500.0, speech_ms=300.0, silence_ms=500.0))
        await pipe.queue_frame(TranscriptFinal(text="Mm-hmm, okay."))
        frames = await drain(pipe, 0.02)
        assert not any(isinstance(f, BargeIn) for f in frames)
        final = next(f for f in frames if isinstance(f, TranscriptFinal))
        assert final.backchannel
        assert isinstance(frames[-1], ResumePlayback)


async def test_speech_longer_than_a_backchannel_interrupts_before_its_words() -> None:
    async with Pipeline([arbiter()]) as pipe:
        await pipe.queue_frame(SpeechOnset())
        await pipe.queue_frame(SpeechOnset(long=True))
        assert kinds(await drain(pipe, 0.02)) == ["PausePlayback", "BargeIn"]


async def test_speech_when_nothing_is_being_said_is_not_judged() -> None:
    async with Pipeline([arbiter(replying=False)]) as pipe:
        await pipe.queue_frame(SpeechOnset())
        await pipe.queue_frame(SpeechOnset(long=True))
        assert await drain(pipe, FALSE_MS / 1000 * 2) == []


def test_backchannels_and_noise_annotations_are_not_interrupting_words() -> None:
    assert interrupting_words("Uh-huh. Okay, I see.") == []
    assert interrupting_words("[coughs] (laughs)") == []
    assert interrupting_words("U.") == []  # Whisper's guess at a blip
    assert interrupting_words("Wait, a") == ["wait"]
    assert interrupting_words("Okay, but what about Canada?") == ["but", "what", "about", "canada"]

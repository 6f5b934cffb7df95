"""Silero VAD and the endpointing processor built on it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.voice.conftest import Speak
from tests.unit.voice.pipeline_helpers import audio_frames, events, of_type, run_to_end
from vocalis.adapters.silero_vad import SileroVAD
from vocalis.core.audio import float32_to_pcm16, resample, silence
from vocalis.ports.vad import VoiceActivityDetector
from vocalis.voice.frames import (
    AudioIn,
    BargeIn,
    ErrorFrame,
    Frame,
    MetricFrame,
    SpeechOnset,
    SpeechStarted,
    SpeechStopped,
)
from vocalis.voice.processors import EndpointingConfig, Pipeline, VADProcessor

QUESTION = "What is the refund policy for damaged items?"


def noise(seconds: float, level: float = 0.02) -> bytes:
    rng = np.random.default_rng(7)
    return float32_to_pcm16(level * rng.standard_normal(int(seconds * 16000)))


def test_implements_the_vad_port(silero: SileroVAD) -> None:
    assert isinstance(silero, VoiceActivityDetector)
    assert (silero.sample_rate, silero.window_samples) == (16000, 512)


def test_silence_and_quiet_noise_are_not_speech(silero: SileroVAD) -> None:
    probabilities = silero.new_stream().process(silence(1.0, 16000) + noise(1.0))
    assert len(probabilities) == 62  # 2 s of 32 ms windows
    assert max(probabilities) < 0.2


async def test_synthesised_speech_is_speech(silero: SileroVAD, speak: Speak) -> None:
    probabilities = silero.new_stream().process(await speak(QUESTION))
    assert np.mean(np.array(probabilities) > 0.5) > 0.6


async def test_probabilities_do_not_depend_on_how_audio_is_chunked(
    silero: SileroVAD, speak: Speak
) -> None:
    pcm = await speak(QUESTION)
    whole = silero.new_stream().process(pcm)
    stream = silero.new_stream()
    chunked = [p for i in range(0, len(pcm), 700) for p in stream.process(pcm[i : i + 700])]
    assert chunked == pytest.approx(whole, abs=1e-5)


async def turn_events(
    silero: SileroVAD, pcm: bytes, config: EndpointingConfig | None = None, rate: int = 16000
) -> list[Frame]:
    async with Pipeline([VADProcessor(silero, config)]) as pipeline:
        return await run_to_end(pipeline, audio_frames(pcm, rate))


async def test_silence_produces_no_turn(silero: SileroVAD) -> None:
    out = await turn_events(silero, silence(2.0, 16000) + noise(2.0))
    assert events(out) == []


async def test_a_burst_shorter_than_the_start_time_produces_no_turn(
    silero: SileroVAD, speak: Speak
) -> None:
    click = (await speak(QUESTION))[16000:19200]  # 100 ms cut from the middle of speech
    out = await turn_events(silero, silence(0.5, 16000) + click + silence(1.5, 16000))
    assert events(out) == []


async def test_speech_shorter_than_the_minimum_ends_a_turn_that_is_not_accepted(
    silero: SileroVAD, speak: Speak
) -> None:
    burst = (await speak(QUESTION))[16000:24000]  # 250 ms of speech
    config = EndpointingConfig(start_ms=64, min_speech_ms=600)
    out = await turn_events(silero, silence(0.5, 16000) + burst + silence(1.5, 16000), config)
    assert of_type(out, SpeechStopped)[0].accepted is False
    assert not of_type(out, MetricFrame)  # no endpointing latency for a rejected turn


async def test_speech_then_silence_is_one_turn_that_ends_after_the_configured_silence(
    silero: SileroVAD, speak: Speak
) -> None:
    # onset_ms=0: the VAD alone, barging in at the start of speech (with an onset the
    # interruption arbiter decides, tests/voice/test_interruption_arbiter.py).
    config = EndpointingConfig(stop_silence_ms=700, onset_ms=0)
    out = await turn_events(
        silero, silence(1.0, 16000) + await speak(QUESTION) + silence(2.0, 16000), config
    )
    # SpeechOnset: the turn's voiced audio outgrew a backchannel (SpeechOnset(long=True)).
    assert events(out) == [
        "BargeIn",
        "SpeechStarted",
        "SpeechOnset",
        "SpeechStopped",
        "MetricFrame",
    ]
    assert of_type(out, SpeechOnset)[0].long
    stopped = of_type(out, SpeechStopped)[0]
    # Where in the input stream the event came out: the audio forwarded before it.
    emitted_at_ms = sum(
        len(f.pcm) / 32 for f in out[: out.index(stopped)] if isinstance(f, AudioIn)
    )
    assert stopped.accepted and stopped.silence_ms >= 700
    assert 700 <= emitted_at_ms - stopped.audio_end_ms <= 700 + 32 + 20  # one window + one chunk


@pytest.mark.parametrize(("stop_silence_ms", "turns"), [(250, 2), (900, 1)])
async def test_a_pause_splits_the_turn_only_when_longer_than_the_end_of_turn_silence(
    silero: SileroVAD, speak: Speak, stop_silence_ms: float, turns: int
) -> None:
    first, second = await speak("Hello there."), await speak("I have a question about my order.")
    pcm = silence(0.5, 16000) + first + silence(0.6, 16000) + second + silence(1.5, 16000)
    out = await turn_events(silero, pcm, EndpointingConfig(stop_silence_ms=stop_silence_ms))
    assert len(of_type(out, SpeechStopped)) == turns


async def test_the_preroll_reaches_back_before_the_speech_onset(
    silero: SileroVAD, speak: Speak
) -> None:
    out = await turn_events(
        silero,
        silence(1.0, 16000) + await speak(QUESTION) + silence(1.0, 16000),
        EndpointingConfig(onset_ms=0),
    )
    started = of_type(out, SpeechStarted)[0]
    emitted_at_ms = sum(
        len(f.pcm) / 32 for f in out[: out.index(started)] if isinstance(f, AudioIn)
    )
    assert started.audio_start_ms <= 1000 - 200  # padding before the first voiced window
    assert len(started.preroll) / 32 == pytest.approx(emitted_at_ms - started.audio_start_ms, abs=1)
    assert out.index(started) == out.index(of_type(out, BargeIn)[0]) + 1


async def test_24_khz_input_is_detected_too(silero: SileroVAD, speak: Speak) -> None:
    pcm = resample(silence(0.5, 16000) + await speak(QUESTION) + silence(1.0, 16000), 16000, 24000)
    out = await turn_events(silero, pcm, rate=24000)
    assert of_type(out, SpeechStarted)[0].sample_rate == 24000
    assert len(of_type(out, SpeechStopped)) == 1


async def test_odd_byte_audio_yields_an_error_and_detection_continues(
    silero: SileroVAD, speak: Speak
) -> None:
    frames = [AudioIn(pcm=b"\x01\x02\x03", sample_rate=16000)]
    frames += audio_frames(silence(0.5, 16000) + await speak(QUESTION) + silence(1.0, 16000))
    async with Pipeline([VADProcessor(silero)]) as pipeline:
        out = await run_to_end(pipeline, frames)
    assert of_type(out, ErrorFrame)[0].code == "invalid_audio"
    assert len(of_type(out, SpeechStopped)) == 1

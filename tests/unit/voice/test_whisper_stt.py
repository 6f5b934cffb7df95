"""The offline faster-whisper speech-to-text adapter."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.unit.voice.conftest import Speak
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.adapters.faster_whisper_stt import (
    DEFAULT_MODEL_SHA256,
    FasterWhisperSTT,
    ModelIntegrityError,
    default_model_dir,
)
from vocalis.ports.stt import PartialTranscriber, SpeechToText, UtteranceTranscriber
from vocalis.ports.tts import synthesize
from vocalis.voice.wer import word_error_rate

QUESTIONS = [
    "What is the refund policy for damaged items?",
    "How long does shipping take to Canada?",
    "Can I change the delivery address after ordering?",
    "Please tell me the opening hours of the London office.",
    "Which payment methods do you accept?",
    "My password reset email never arrived.",
    "Is there a discount for annual subscriptions?",
    "Do you deliver orders over 50 pounds for free?",
]


def test_implements_the_speech_to_text_ports(whisper: FasterWhisperSTT) -> None:
    assert isinstance(whisper, SpeechToText)
    assert isinstance(whisper, PartialTranscriber)
    assert isinstance(whisper, UtteranceTranscriber)


async def test_transcribes_synthesised_questions_with_wer_at_most_15_percent(
    whisper: FasterWhisperSTT, speak: Speak
) -> None:
    hypotheses = [(await whisper.transcribe(await speak(q), 16000)).text for q in QUESTIONS]
    wer = word_error_rate(QUESTIONS, hypotheses)
    assert wer <= 0.15, list(zip(QUESTIONS, hypotheses, strict=True))


async def test_the_short_window_is_as_accurate_and_faster_than_the_full_one(
    whisper: FasterWhisperSTT, speak: Speak
) -> None:
    """Live turns encode a 10 s window, not Whisper's padded 30 s: same words, less work."""
    spoken = [await speak(q) for q in QUESTIONS]
    await whisper.transcribe_utterance(spoken[0], 16000)  # both paths warm
    await whisper.transcribe(spoken[0], 16000)
    full_s = short_s = 0.0
    full, short = [], []
    for pcm in spoken:
        started = time.perf_counter()
        full.append((await whisper.transcribe(pcm, 16000)).text)
        full_s += time.perf_counter() - started
        started = time.perf_counter()
        transcript = await whisper.transcribe_utterance(pcm, 16000)
        short_s += time.perf_counter() - started
        short.append(transcript.text)
        assert transcript.language == "en"
        assert transcript.duration == pytest.approx(len(pcm) / 32000)
    assert word_error_rate(QUESTIONS, short) <= max(0.15, word_error_rate(QUESTIONS, full))
    # The encoder's work is a third; decoding is the same: measured ~5x, asserted 2x.
    assert short_s * 2 < full_s, (short_s, full_s)


async def test_long_audio_takes_the_full_window(whisper: FasterWhisperSTT, speak: Speak) -> None:
    pcm = await speak("Which payment methods do you accept?")
    long = pcm + bytes(32000 * 28)  # 28 s of silence after the question: past the window
    transcript = await whisper.transcribe_utterance(long, 16000)
    assert "payment" in transcript.text.lower()
    assert transcript.duration == pytest.approx(len(long) / 32000)


async def test_transcript_has_language_duration_and_timed_segments(
    whisper: FasterWhisperSTT, speak: Speak
) -> None:
    pcm = await speak("How long does shipping take to Canada?")
    transcript = await whisper.transcribe(pcm, 16000)
    assert transcript.language == "en"
    assert transcript.duration == pytest.approx(len(pcm) / 32000)
    assert transcript.segments
    assert all(0 <= s.start < s.end <= transcript.duration + 0.5 for s in transcript.segments)


async def test_accepts_audio_at_other_sample_rates(
    whisper: FasterWhisperSTT, espeak: EspeakTTS
) -> None:
    pcm = await synthesize(espeak, "Which payment methods do you accept?")
    transcript = await whisper.transcribe(pcm, espeak.sample_rate)
    assert word_error_rate(["Which payment methods do you accept?"], [transcript.text]) <= 0.2


async def test_partial_transcript_is_text(whisper: FasterWhisperSTT, speak: Speak) -> None:
    text = await whisper.transcribe_partial(await speak("How long does shipping take?"), 16000)
    assert "shipping" in text.lower()


async def test_empty_audio_gives_an_empty_transcript(whisper: FasterWhisperSTT) -> None:
    transcript = await whisper.transcribe(b"", 16000)
    assert transcript.text == "" and transcript.duration == 0.0


async def test_the_event_loop_keeps_running_during_transcription(
    whisper: FasterWhisperSTT, speak: Speak
) -> None:
    pcm = await speak("Please tell me the opening hours of the London office.")
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await whisper.transcribe(pcm, 16000)
    task.cancel()
    assert len(gaps) > 5
    assert max(gaps) < 0.25  # never held for long (a blocking call would hold it ~0.7 s)


def test_model_files_with_a_wrong_checksum_are_refused() -> None:
    tampered = {**DEFAULT_MODEL_SHA256, "model.bin": "0" * 64}
    with pytest.raises(ModelIntegrityError, match=r"model\.bin"):
        FasterWhisperSTT(default_model_dir(), sha256=tampered).load()


def test_a_model_directory_without_checksums_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"not a model")
    with pytest.raises(ModelIntegrityError, match="SHA256SUMS"):
        FasterWhisperSTT(tmp_path).load()


def test_a_checksum_file_is_honoured(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"not a model")
    (tmp_path / "SHA256SUMS").write_text(f"{'1' * 64}  model.bin\n")
    with pytest.raises(ModelIntegrityError, match="expected 1111"):
        FasterWhisperSTT(tmp_path).load()

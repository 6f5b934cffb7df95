"""Warm, non-competing engines: warmed once at start-up, one intra-op thread each, and the
fixed phrases spoken from memory (real engines: faster-whisper tiny.en, Silero, espeak-ng)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.core.audio import resample
from vocalis.ports.tts import synthesize
from vocalis.settings import Settings
from vocalis.voice.phrases import PhraseCache, spoken_sentences, warm_up
from vocalis.wiring.speech import FIXED_PHRASES, build_voice_engines


async def test_a_phrase_spoken_once_is_replayed_from_memory_in_the_same_chunks() -> None:
    cache = PhraseCache(EspeakTTS())
    text = "Goodbye, and thank you for getting in touch!"
    started = time.perf_counter()
    first = [chunk async for chunk in cache.synthesize_stream(text)]
    synthesised_s = time.perf_counter() - started
    started = time.perf_counter()
    again = [chunk async for chunk in cache.synthesize_stream(text, "no-such-voice")]
    replayed_s = time.perf_counter() - started
    assert again == first and cache.hits == 1
    assert replayed_s < synthesised_s / 5
    # Answers are not phrases: a long text is synthesised every time.
    long = "The warranty covers every appliance for two full years. " * 4
    await synthesize(cache, long)
    assert not cache.cached(long)
    # A synthesis cut off before its end is not kept.
    stream = cache.synthesize_stream("Just a moment, please.")
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert not cache.cached("Just a moment, please.")


async def test_warm_up_runs_every_engine_once_and_caches_the_fixed_phrases(
    tmp_path: Path,
) -> None:
    settings = Settings(
        env="test",
        data_dir=tmp_path,
        voice_tts_engine="espeak",
        voice_turn_detector="smart-turn",
        voice_engine_threads=1,
    )
    engines = await asyncio.to_thread(build_voice_engines, settings, api_key=None)
    assert isinstance(engines.tts, PhraseCache)
    await warm_up(engines, FIXED_PHRASES)
    for phrase in FIXED_PHRASES:
        assert all(engines.tts.cached(s) for s in spoken_sentences(phrase)), phrase
    # No first-call penalty: the first real transcription costs what the next one does.
    espeak = EspeakTTS()
    pcm = resample(
        await synthesize(espeak, "What is your refund policy?"), espeak.sample_rate, 16000
    )
    started = time.perf_counter()
    first = await engines.stt.transcribe(pcm, 16000, "en")
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    second = await engines.stt.transcribe(pcm, 16000, "en")
    second_s = time.perf_counter() - started
    assert first.text == second.text and "refund" in first.text.lower()
    assert first_s < second_s * 2 + 0.2, (first_s, second_s)

"""The offline espeak-ng text-to-speech adapter."""

from __future__ import annotations

import asyncio

import numpy as np

from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.core.audio import duration_seconds
from vocalis.ports.tts import TextToSpeech, synthesize

LONG_SENTENCE = (
    "Our refund policy lets you return any undamaged item within thirty days of delivery, "
    "and we will refund the full price to your original payment method."
)


def test_implements_the_text_to_speech_port(espeak: EspeakTTS) -> None:
    assert isinstance(espeak, TextToSpeech)
    assert espeak.sample_rate == 22050
    assert "en-us" in espeak.voices and "en-gb" in espeak.voices


async def test_produces_valid_pcm_of_plausible_duration(espeak: EspeakTTS) -> None:
    text = "What is the refund policy for damaged items?"
    pcm = await synthesize(espeak, text)
    assert len(pcm) % 2 == 0
    seconds = duration_seconds(pcm, espeak.sample_rate)
    words = len(text.split())
    assert 0.15 * words < seconds < 0.6 * words  # speech is roughly 2-5 words a second
    level = np.sqrt(np.mean(np.frombuffer(pcm, "<i2").astype(np.float64) ** 2))
    assert level > 500  # audible, not silence


async def test_streams_a_long_sentence_in_several_chunks(espeak: EspeakTTS) -> None:
    chunks = [chunk async for chunk in espeak.synthesize_stream(LONG_SENTENCE)]
    assert len(chunks) > 10
    assert all(len(chunk) % 2 == 0 and chunk for chunk in chunks)


# espeak-ng carries a little state between utterances, so repeated syntheses of the same
# text differ by a few samples: compare durations, not bytes.
def same_length(a: bytes, b: bytes, tolerance: float = 0.01) -> bool:
    return abs(len(a) - len(b)) <= tolerance * max(len(a), len(b))


async def test_unknown_voice_falls_back_to_the_default(espeak: EspeakTTS) -> None:
    text = "Hello there, how are you doing today?"
    assert espeak.resolve_voice("alloy") == espeak.default_voice == "en-us"
    fallback = await synthesize(espeak, text, voice="alloy")
    assert same_length(fallback, await synthesize(espeak, text, voice="en-us"))


async def test_a_known_voice_is_used(espeak: EspeakTTS) -> None:
    text = "Hello there, how are you doing today?"
    assert espeak.resolve_voice("en-GB") == "en-gb"
    british = await synthesize(espeak, text, voice="en-gb")
    assert not same_length(british, await synthesize(espeak, text, voice="en-us"))


async def test_concurrent_syntheses_do_not_mix_their_audio(espeak: EspeakTTS) -> None:
    texts = [
        "The first caller asks about shipping.",
        "The second caller wants a refund today, please.",
    ]
    alone = [await synthesize(espeak, text) for text in texts]
    together = await asyncio.gather(*(synthesize(espeak, text) for text in texts))
    assert all(same_length(a, b) for a, b in zip(alone, together, strict=True))


async def test_closing_the_stream_early_stops_synthesis_and_frees_the_engine(
    espeak: EspeakTTS,
) -> None:
    stream = espeak.synthesize_stream(LONG_SENTENCE * 5)
    first = await anext(stream)
    await stream.aclose()
    assert first
    # The engine lock was released: the next request completes normally.
    assert await asyncio.wait_for(synthesize(espeak, "Still working."), timeout=5)


async def test_blank_text_yields_no_audio(espeak: EspeakTTS) -> None:
    assert await synthesize(espeak, "   ") == b""

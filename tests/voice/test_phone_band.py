"""The telephone band: 8 kHz G.711 μ-law input is transcribed at a word error rate ≤ 15 %.

The question set (`bench/voice_engines.py`) is spoken by Piper's `joe` voice (male; a
different voice and engine than the agent's default, hibari's `heart`), resampled to 8 kHz,
μ-law encoded as a carrier sends it, decoded with the codec the transports use, and
transcribed by the engine the phone path uses (`build_phone_stt`, the
`voice_phone_whisper_model` setting) exactly as a phone call's frames reach it: PCM16 at
8 kHz. Nothing here is faked.
"""

from __future__ import annotations

import pytest
from bench.voice_engines import QUESTIONS

from vocalis.adapters.faster_whisper_stt import FasterWhisperSTT
from vocalis.adapters.piper_tts import PiperTTS
from vocalis.core.audio import G711_RATE, G711_ULAW, decode, encode, resample
from vocalis.core.errors import BackendUnavailable
from vocalis.ports.stt import SpeechToText
from vocalis.ports.tts import synthesize
from vocalis.settings import Settings
from vocalis.voice.wer import word_error_rate
from vocalis.wiring.speech import STT_ENGINES, build_phone_stt

MAX_WER = 0.15


@pytest.fixture(scope="module")
async def phone_calls() -> list[bytes]:
    """Each question as a phone call delivers it: G.711 μ-law bytes at 8 kHz."""
    caller = PiperTTS()
    calls = []
    for text in QUESTIONS:
        pcm = await synthesize(caller, text)
        calls.append(encode(resample(pcm, caller.sample_rate, G711_RATE), G711_ULAW))
    caller.close()
    return calls


@pytest.fixture(scope="module")
def phone_stt() -> SpeechToText:
    """The speech-to-text engine the phone path uses with the default settings."""
    return build_phone_stt(Settings(env="test"), api_key=None)


async def test_g711_ulaw_questions_are_transcribed_within_the_wer_budget(
    phone_calls: list[bytes], phone_stt: SpeechToText
) -> None:
    heard = [
        (await phone_stt.transcribe(decode(call, G711_ULAW), G711_RATE)).text
        for call in phone_calls
    ]
    wer = word_error_rate(QUESTIONS, heard)
    print(f"telephone-band WER {wer:.1%} on {len(QUESTIONS)} questions")  # shown with -s
    assert len(QUESTIONS) >= 20
    assert wer <= MAX_WER, list(zip(QUESTIONS, heard, strict=True))
    # Live call turns take the same full 30 s window (the 10 s one cost words on the band).
    live = [
        (await phone_stt.transcribe_utterance(decode(call, G711_ULAW), G711_RATE)).text  # type: ignore[attr-defined]
        for call in phone_calls[:3]
    ]
    assert live == heard[:3]


def test_the_phone_path_uses_whisper_base_unless_configured_otherwise(
    phone_stt: SpeechToText,
) -> None:
    wideband = STT_ENGINES.build(Settings(env="test"), None)
    assert isinstance(phone_stt, FasterWhisperSTT) and phone_stt.model_label == "base"
    assert phone_stt is not wideband
    same = build_phone_stt(Settings(env="test", voice_phone_whisper_model=""), api_key=None)
    assert same is wideband


def test_an_unknown_phone_model_is_refused_naming_the_setting() -> None:
    settings = Settings(env="test", voice_phone_whisper_model="/no/such/model")
    with pytest.raises(BackendUnavailable, match="VOCALIS_VOICE_PHONE_WHISPER_MODEL"):
        build_phone_stt(settings, api_key=None)

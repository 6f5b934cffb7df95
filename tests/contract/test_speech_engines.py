"""The speech-engine contract: every registered STT, TTS, VAD and turn-detector engine.

The engine fixtures are parametrized by the registry itself (`vocalis.wiring.speech`), so a
newly registered engine runs this whole suite as soon as it has an entry in `CONTRACT`
(and `test_every_registered_engine_has_contract_parameters` fails until it does). Engines
are built through the registry with settings, as the composition root builds them. Remote
engines (`openai`) call a live Vocalis server's OpenAI-compatible audio endpoints. Speech is
synthesised offline with espeak-ng.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures.audio_server import AudioServer
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.core.audio import duration_seconds, resample, silence
from vocalis.core.errors import BackendUnavailable
from vocalis.ports.speech import TurnDetector
from vocalis.ports.stt import SpeechToText
from vocalis.ports.tts import TextToSpeech, synthesize
from vocalis.ports.vad import VoiceActivityDetector
from vocalis.settings import Settings
from vocalis.voice.wer import word_error_rate
from vocalis.wiring import build_backends
from vocalis.wiring.speech import (
    REGISTRIES,
    STT_ENGINES,
    TTS_ENGINES,
    TURN_DETECTORS,
    VAD_ENGINES,
    EngineRegistry,
    build_voice_engines,
    needs_api_key,
)

SettingsFor = Callable[[AudioServer | None], dict[str, Any]]


def _offline(_server: AudioServer | None) -> dict[str, Any]:
    return {}


def _against_vocalis(server: AudioServer | None) -> dict[str, Any]:
    assert server is not None
    return {"voice_openai_base_url": server.base_url}


# How the suite configures each registered engine (kind, name) → settings overrides.
CONTRACT: dict[tuple[str, str], SettingsFor] = {
    ("stt", "faster-whisper"): _offline,
    ("stt", "openai"): _against_vocalis,
    ("tts", "espeak"): _offline,
    ("tts", "hibari"): _offline,
    ("tts", "piper"): _offline,
    ("tts", "openai"): _against_vocalis,
    ("vad", "silero"): _offline,
    ("turn", "silence"): _offline,
    ("turn", "smart-turn"): _offline,
}

# Keyword → a question that contains it; transcripts are checked for the keyword.
QUESTIONS = {
    "canada": "How long does shipping to Canada take?",
    "refund": "Can I get a refund without the receipt?",
    "monday": "Is the support line open on Monday morning?",
}
LONG_PARTS = (
    "Refunds are given within thirty days.",
    "The support line opens at nine.",
    "Shipping to Canada takes a week.",
)
LONG_TEXT = " ".join(
    [
        "The warranty covers every appliance for two full years from the day it is delivered "
        "to your home, including all parts and labour."
    ]
    * 4
)
RATES = (8000, 16000, 22050, 24000, 48000)  # telephony, wideband, espeak, OpenAI, WebRTC
SPEECH_RATE = 22050  # what the espeak-ng fixture speaks at


def _engine_settings(
    registry: EngineRegistry[Any], name: str, server: AudioServer | None
) -> Settings:
    configure = CONTRACT.get((registry.kind, name))
    if configure is None:
        pytest.fail(f"the {registry.title} engine {name!r} has no entry in CONTRACT")
    return Settings(env="test", **{registry.setting: name, **configure(server)})


def _build(registry: EngineRegistry[Any], request: pytest.FixtureRequest) -> Any:
    """The engine named by the fixture's parameter, built by the registry (blocking)."""
    name = str(request.param)
    server = None
    if not registry[name].offline:
        server = request.getfixturevalue("audio_server")
    settings = _engine_settings(registry, name, server)
    return registry.build(settings, server.api_key if server else None)


@pytest.fixture(scope="session", params=STT_ENGINES.names())
def stt(request: pytest.FixtureRequest) -> SpeechToText:
    """Each registered speech-to-text engine."""
    engine: SpeechToText = _build(STT_ENGINES, request)
    return engine


@pytest.fixture(scope="session", params=TTS_ENGINES.names())
def tts(request: pytest.FixtureRequest) -> TextToSpeech:
    """Each registered text-to-speech engine."""
    engine: TextToSpeech = _build(TTS_ENGINES, request)
    return engine


@pytest.fixture(scope="session", params=VAD_ENGINES.names())
def vad(request: pytest.FixtureRequest) -> VoiceActivityDetector:
    """Each registered voice-activity detector."""
    engine: VoiceActivityDetector = _build(VAD_ENGINES, request)
    return engine


@pytest.fixture(scope="session", params=TURN_DETECTORS.names())
def turn(request: pytest.FixtureRequest) -> TurnDetector:
    """Each registered turn detector."""
    engine: TurnDetector = _build(TURN_DETECTORS, request)
    return engine


@pytest.fixture(scope="session")
def speaker() -> EspeakTTS:
    """The offline voice that speaks the test utterances."""
    return EspeakTTS()


@pytest.fixture(scope="session")
async def questions(speaker: EspeakTTS) -> dict[str, bytes]:
    """Each question spoken, PCM16 at `SPEECH_RATE`."""
    return {key: await synthesize(speaker, text) for key, text in QUESTIONS.items()}


@pytest.fixture(scope="session")
async def long_speech(speaker: EspeakTTS) -> bytes:
    """About 30 s at 16 kHz: three sentences with long pauses between them."""
    pcm = b""
    for index, text in enumerate(LONG_PARTS):
        pcm += resample(await synthesize(speaker, text), SPEECH_RATE, 16000)
        if index < len(LONG_PARTS) - 1:
            pcm += silence(12, 16000)
    return pcm


@pytest.fixture(scope="session")
def transcriber() -> SpeechToText:
    """The offline STT that checks what TTS engines said."""
    return STT_ENGINES["faster-whisper"].factory(Settings(env="test"), None)


async def _speak(tts: TextToSpeech, text: str) -> list[bytes]:
    return [chunk async for chunk in tts.synthesize_stream(text)]


async def _heard(transcriber: SpeechToText, pcm16: bytes, rate: int) -> str:
    return (await transcriber.transcribe(pcm16, rate)).text.lower()


# --- the registry ---------------------------------------------------------------------------
def test_every_registered_engine_has_contract_parameters() -> None:
    registered = {(registry.kind, name) for registry in REGISTRIES for name in registry.names()}
    assert registered == set(CONTRACT)


def test_default_settings_build_one_engine_of_each_kind() -> None:
    engines = build_voice_engines(Settings(env="test"), api_key=None)
    assert isinstance(engines.stt, SpeechToText)
    assert isinstance(engines.tts, TextToSpeech)
    assert isinstance(engines.vad, VoiceActivityDetector)
    assert isinstance(engines.turn, TurnDetector)


def test_offline_engines_are_loaded_once_per_process() -> None:
    first = build_voice_engines(Settings(env="test"), api_key=None)
    second = build_voice_engines(Settings(env="test"), api_key=None)
    assert (first.stt, first.vad, first.turn) == (second.stt, second.vad, second.turn)
    # The TTS comes wrapped in a phrase cache per engine set; the model under it is shared.
    assert getattr(first.tts, "inner", first.tts) is getattr(second.tts, "inner", second.tts)


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.kind)
def test_an_unknown_engine_name_is_refused_with_the_registered_names(
    registry: EngineRegistry[Any],
) -> None:
    settings = Settings(env="test", **{registry.setting: "festival"})
    with pytest.raises(BackendUnavailable) as refused:
        build_voice_engines(settings, api_key=None)
    assert registry.variable in refused.value.detail
    assert all(name in refused.value.detail for name in registry.names())


async def test_the_composition_root_refuses_an_unknown_engine_before_building_anything(
    tmp_path: Path,
) -> None:
    settings = Settings(env="test", data_dir=tmp_path / "data", voice_tts_engine="festival")
    with pytest.raises(BackendUnavailable) as refused:
        await build_backends(settings)
    assert "VOCALIS_VOICE_TTS_ENGINE" in refused.value.detail
    assert not (tmp_path / "data").exists()


def test_an_engine_that_fails_to_load_names_itself_and_the_cause(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"not a model")
    settings = Settings(env="test", voice_whisper_model=str(tmp_path))
    with pytest.raises(BackendUnavailable) as refused:
        build_voice_engines(settings, api_key=None)
    assert "'faster-whisper' could not be loaded" in refused.value.detail
    assert "SHA256SUMS" in refused.value.detail


def test_only_remote_engines_need_the_audio_api_key() -> None:
    assert not needs_api_key(Settings(env="test"))
    assert needs_api_key(Settings(env="test", voice_tts_engine="openai"))


# --- speech to text -------------------------------------------------------------------------
@pytest.mark.parametrize("rate", RATES)
async def test_stt_transcribes_speech_at_every_sample_rate(
    stt: SpeechToText, questions: dict[str, bytes], rate: int
) -> None:
    transcript = await stt.transcribe(resample(questions["canada"], SPEECH_RATE, rate), rate)
    assert "canada" in transcript.text.lower(), transcript.text


async def test_stt_gives_empty_text_for_empty_audio(stt: SpeechToText) -> None:
    transcript = await stt.transcribe(b"", 16000)
    assert transcript.text == ""


async def test_stt_transcribes_thirty_seconds_from_start_to_end(
    stt: SpeechToText, long_speech: bytes
) -> None:
    assert duration_seconds(long_speech, 16000) > 30
    text = (await stt.transcribe(long_speech, 16000)).text.lower()
    assert "refund" in text and "canada" in text, text


async def test_stt_stays_usable_after_a_cancelled_transcription(
    stt: SpeechToText, questions: dict[str, bytes]
) -> None:
    task = asyncio.create_task(stt.transcribe(questions["canada"], SPEECH_RATE))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    transcript = await stt.transcribe(questions["refund"], SPEECH_RATE)
    assert "refund" in transcript.text.lower(), transcript.text


async def test_stt_gives_each_concurrent_caller_its_own_transcript(
    stt: SpeechToText, questions: dict[str, bytes]
) -> None:
    keys = list(questions)
    transcripts = await asyncio.gather(
        *(stt.transcribe(questions[key], SPEECH_RATE) for key in keys)
    )
    for key, transcript in zip(keys, transcripts, strict=True):
        assert key in transcript.text.lower(), (key, transcript.text)


# --- text to speech -------------------------------------------------------------------------
async def test_tts_streams_pcm16_at_its_declared_rate(
    tts: TextToSpeech, transcriber: SpeechToText
) -> None:
    chunks = await _speak(tts, QUESTIONS["canada"])
    assert chunks and all(chunk and len(chunk) % 2 == 0 for chunk in chunks)
    pcm = b"".join(chunks)
    assert 1.0 < duration_seconds(pcm, tts.sample_rate) < 6.0
    heard = await _heard(transcriber, pcm, tts.sample_rate)
    assert word_error_rate([QUESTIONS["canada"]], [heard]) <= 0.3, heard


@pytest.mark.parametrize("text", ["", "   \n"])
async def test_tts_gives_no_audio_for_empty_text(tts: TextToSpeech, text: str) -> None:
    assert await _speak(tts, text) == []


async def test_tts_streams_long_text_in_many_chunks(tts: TextToSpeech) -> None:
    chunks = await _speak(tts, LONG_TEXT)
    seconds = duration_seconds(b"".join(chunks), tts.sample_rate)
    words_per_second = len(LONG_TEXT.split()) / seconds
    assert len(chunks) > 10
    assert 1.5 < words_per_second < 4.5, seconds


async def test_tts_stays_usable_after_a_cancelled_stream(
    tts: TextToSpeech, transcriber: SpeechToText
) -> None:
    reference = await synthesize(tts, QUESTIONS["monday"])
    first_chunk = asyncio.Event()

    async def listen() -> None:
        async for _chunk in tts.synthesize_stream(LONG_TEXT):
            first_chunk.set()

    task = asyncio.create_task(listen())
    await asyncio.wait_for(first_chunk.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    after = await synthesize(tts, QUESTIONS["monday"])
    # Nothing of the abandoned stream leaks into the next one.
    assert abs(len(after) - len(reference)) <= 0.1 * len(reference)
    assert "monday" in await _heard(transcriber, after, tts.sample_rate)


async def test_tts_gives_each_concurrent_caller_its_own_speech(
    tts: TextToSpeech, transcriber: SpeechToText
) -> None:
    keys = list(QUESTIONS)
    spoken = await asyncio.gather(*(synthesize(tts, QUESTIONS[key]) for key in keys))
    for key, pcm in zip(keys, spoken, strict=True):
        assert key in await _heard(transcriber, pcm, tts.sample_rate), key


# --- voice-activity detection ---------------------------------------------------------------
def _windows(vad: VoiceActivityDetector, pcm16: bytes) -> int:
    return len(pcm16) // 2 // vad.window_samples


def _at_vad_rate(vad: VoiceActivityDetector, pcm16: bytes) -> bytes:
    return resample(pcm16, SPEECH_RATE, vad.sample_rate)


async def test_vad_tells_speech_windows_from_silence(
    vad: VoiceActivityDetector, questions: dict[str, bytes]
) -> None:
    speech = vad.new_stream().process(_at_vad_rate(vad, questions["canada"]))
    quiet = vad.new_stream().process(silence(2.0, vad.sample_rate))
    assert all(0.0 <= p <= 1.0 for p in speech + quiet)
    assert max(speech) > 0.8 and sum(p > 0.5 for p in speech) > len(speech) / 3
    assert max(quiet) < 0.2


async def test_vad_gives_nothing_for_empty_input(vad: VoiceActivityDetector) -> None:
    assert vad.new_stream().process(b"") == []


async def test_vad_gives_one_probability_per_window_of_long_input_however_it_is_cut(
    vad: VoiceActivityDetector, long_speech: bytes
) -> None:
    audio = resample(long_speech, 16000, vad.sample_rate)
    whole = vad.new_stream().process(audio)
    stream = vad.new_stream()
    pieces = [stream.process(audio[i : i + 998]) for i in range(0, len(audio), 998)]
    assert len(whole) == _windows(vad, audio)
    np.testing.assert_allclose([p for piece in pieces for p in piece], whole, atol=1e-4)


async def test_vad_streams_are_independent_when_used_concurrently(
    vad: VoiceActivityDetector, questions: dict[str, bytes]
) -> None:
    inputs = [_at_vad_rate(vad, questions[key]) for key in QUESTIONS]
    alone = [vad.new_stream().process(pcm) for pcm in inputs]
    streams = [vad.new_stream() for _ in inputs]
    chunk = vad.window_samples * 2 * 3

    def feed(index: int) -> list[float]:
        pcm = inputs[index]
        return [
            p for i in range(0, len(pcm), chunk) for p in streams[index].process(pcm[i : i + chunk])
        ]

    together = await asyncio.gather(*(asyncio.to_thread(feed, i) for i in range(len(inputs))))
    for expected, got in zip(alone, together, strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-4)


async def test_vad_reset_forgets_the_stream_so_far(
    vad: VoiceActivityDetector, questions: dict[str, bytes]
) -> None:
    speech = _at_vad_rate(vad, questions["refund"])
    fresh = vad.new_stream().process(speech)
    stream = vad.new_stream()
    stream.process(_at_vad_rate(vad, questions["monday"]) + b"\x01\x00" * 100)
    stream.reset()
    np.testing.assert_allclose(stream.process(speech), fresh, atol=1e-5)


# --- turn detection -------------------------------------------------------------------------
def _probabilities_are_valid(values: Sequence[float]) -> bool:
    return all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in values)


async def test_turn_detector_gives_a_probability_for_a_finished_and_a_cut_off_question(
    turn: TurnDetector, questions: dict[str, bytes]
) -> None:
    whole = resample(questions["canada"], SPEECH_RATE, turn.sample_rate)
    half = whole[: len(whole) // 4 * 2]
    probabilities = [
        await turn.end_of_turn_probability(whole),
        await turn.end_of_turn_probability(half),
    ]
    assert _probabilities_are_valid(probabilities)


async def test_turn_detector_gives_a_probability_for_empty_audio(turn: TurnDetector) -> None:
    assert _probabilities_are_valid([await turn.end_of_turn_probability(b"")])


async def test_turn_detector_answers_concurrent_callers(
    turn: TurnDetector, questions: dict[str, bytes]
) -> None:
    inputs = [resample(pcm, SPEECH_RATE, turn.sample_rate) for pcm in questions.values()]
    results = await asyncio.gather(*(turn.end_of_turn_probability(pcm) for pcm in inputs))
    assert _probabilities_are_valid(results)

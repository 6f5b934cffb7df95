"""The OpenAI-compatible audio endpoints, called with the official `openai` SDK."""

from __future__ import annotations

import io
import wave

import openai
import pytest

from tests.voice.helpers import VoiceServer, loudness
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.core.audio import duration_seconds, wav_encode
from vocalis.ports.tts import synthesize
from vocalis.voice.wer import word_error_rate

QUESTION = "How long does shipping to Canada take?"
ANSWER = "Shipping to Canada takes five to seven business days."


@pytest.fixture
async def question_wav(espeak: EspeakTTS) -> bytes:
    """A spoken question as a WAV file (22.05 kHz, as espeak-ng speaks)."""
    return wav_encode(await synthesize(espeak, QUESTION), espeak.sample_rate)


async def test_the_sdk_transcribes_a_wav_file(
    voice_server: VoiceServer, question_wav: bytes
) -> None:
    transcription = await voice_server.openai().audio.transcriptions.create(
        model="whisper-1", file=("question.wav", question_wav, "audio/wav")
    )
    assert word_error_rate([QUESTION], [transcription.text]) <= 0.15, transcription.text


async def test_transcripts_come_as_text_verbose_json_and_subtitles(
    voice_server: VoiceServer, question_wav: bytes
) -> None:
    client = voice_server.openai()
    file = ("question.wav", question_wav, "audio/wav")
    text = await client.audio.transcriptions.create(
        model="default", file=file, response_format="text"
    )
    assert isinstance(text, str) and "Canada" in text
    verbose = await client.audio.transcriptions.create(
        model="whisper-1", file=file, response_format="verbose_json"
    )
    assert verbose.language == "en"
    assert 1.0 < verbose.duration < 5.0
    assert verbose.segments and verbose.segments[0].end <= verbose.duration + 0.5
    srt = await client.audio.transcriptions.create(
        model="whisper-1", file=file, response_format="srt"
    )
    assert isinstance(srt, str) and srt.startswith("1\n00:00:0") and " --> " in srt


async def test_undecodable_audio_and_unknown_models_are_refused(
    voice_server: VoiceServer, question_wav: bytes
) -> None:
    client = voice_server.openai()
    with pytest.raises(openai.BadRequestError) as garbage:
        await client.audio.transcriptions.create(
            model="whisper-1", file=("notes.wav", b"RIFF\x00\x00\x00\x00WAVEjunk", "audio/wav")
        )
    assert garbage.value.code == "invalid_audio"
    with pytest.raises(openai.NotFoundError) as unknown:
        await client.audio.transcriptions.create(
            model="large-v9", file=("question.wav", question_wav, "audio/wav")
        )
    assert unknown.value.code == "audio_model_not_found"
    with pytest.raises(openai.BadRequestError) as mp3:
        await client.audio.speech.create(
            model="tts-1", voice="alloy", input=ANSWER, response_format="mp3"
        )
    assert mp3.value.code == "unsupported_audio_format"


async def test_the_sdk_gets_speech_as_wav_that_transcribes_back(voice_server: VoiceServer) -> None:
    client = voice_server.openai()
    speech = await client.audio.speech.create(
        model="tts-1", voice="alloy", input=ANSWER, response_format="wav"
    )
    with wave.open(io.BytesIO(speech.content)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24000)
        pcm = wav.readframes(wav.getnframes())
    assert 2.0 < duration_seconds(pcm, 24000) < 8.0
    assert loudness(pcm) > 500
    heard = await client.audio.transcriptions.create(
        model="whisper-1", file=("answer.wav", wav_encode(pcm, 24000), "audio/wav")
    )
    assert word_error_rate([ANSWER], [heard.text]) <= 0.15, heard.text


async def test_raw_pcm_speech_is_streamed_as_it_is_synthesised(voice_server: VoiceServer) -> None:
    long_text = " ".join([ANSWER] * 6)
    client = voice_server.openai()
    chunks: list[bytes] = []
    async with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="no-such-voice", input=long_text, response_format="pcm"
    ) as response:
        assert response.headers["content-type"] == "audio/pcm"
        assert "content-length" not in response.headers  # chunked: sent while synthesising
        async for chunk in response.iter_bytes():
            chunks.append(chunk)
    pcm = b"".join(chunks)
    assert len(chunks) > 1
    assert len(pcm) % 2 == 0
    assert duration_seconds(pcm, 24000) > 15.0
    assert loudness(pcm) > 500


async def test_a_streamed_transcript_comes_as_delta_events_then_done(
    voice_server: VoiceServer, question_wav: bytes
) -> None:
    """`stream=true`: OpenAI's `transcript.text.delta` events, then `transcript.text.done`."""
    stream = await voice_server.openai().audio.transcriptions.create(
        model="whisper-1", file=("question.wav", question_wav, "audio/wav"), stream=True
    )
    events = [event async for event in stream]
    assert [e.type for e in events[:-1]] == ["transcript.text.delta"] * (len(events) - 1)
    assert len(events) >= 2
    done = events[-1]
    assert done.type == "transcript.text.done"
    assert "".join(e.delta for e in events[:-1]).strip() == done.text  # type: ignore[union-attr]
    assert word_error_rate([QUESTION], [done.text]) <= 0.15, done.text  # type: ignore[union-attr]


async def test_word_and_segment_timestamps_come_with_verbose_json(
    voice_server: VoiceServer, question_wav: bytes
) -> None:
    client = voice_server.openai()
    file = ("question.wav", question_wav, "audio/wav")
    both = await client.audio.transcriptions.create(
        model="whisper-1",
        file=file,
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert both.words and both.segments
    said = [w.word.strip(".?,").lower() for w in both.words]
    assert "canada" in said, said
    starts = [w.start for w in both.words]
    assert starts == sorted(starts) and all(w.end >= w.start for w in both.words)
    assert both.words[-1].end <= both.duration + 0.5
    words_only = await client.audio.transcriptions.create(
        model="whisper-1",
        file=file,
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert words_only.words and not words_only.segments
    with pytest.raises(openai.BadRequestError) as refused:
        await client.audio.transcriptions.create(
            model="whisper-1", file=file, response_format="json", timestamp_granularities=["word"]
        )
    assert refused.value.code == "audio_parameter_unsupported"
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["param"] == "timestamp_granularities"


async def test_a_translation_is_english_text(
    voice_server: VoiceServer, question_wav: bytes
) -> None:
    """The packaged English-only model hears English: its translation is the transcript."""
    client = voice_server.openai()
    translation = await client.audio.translations.create(
        model="whisper-1", file=("question.wav", question_wav, "audio/wav")
    )
    assert word_error_rate([QUESTION], [translation.text]) <= 0.15, translation.text
    verbose = await client.audio.translations.create(
        model="whisper-1",
        file=("question.wav", question_wav, "audio/wav"),
        response_format="verbose_json",
    )
    assert verbose.text and verbose.language == "en"

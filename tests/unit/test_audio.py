"""Codecs, resampling and WAV helpers."""

from __future__ import annotations

import io
import warnings
import wave
from pathlib import Path

import numpy as np
import pytest

from vocalis.core import audio
from vocalis.core.audio import (
    G711_ALAW,
    G711_ULAW,
    PCM16_16K,
    PCM16_24K,
    AudioFormat,
    MalformedAudio,
    OddByteCount,
    Resampler,
    UnsupportedAudioFormat,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the reference implementation we replace (removed in Python 3.13)

ALL_SAMPLES = np.arange(-32768, 32768, dtype="<i2").tobytes()


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return audio.float32_to_pcm16(amplitude * np.sin(2 * np.pi * freq * t))


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def peak_frequency(pcm: bytes, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples(pcm)))
    return float(np.argmax(spectrum) * rate / len(samples(pcm)))


def test_ulaw_decodes_the_g711_reference_values() -> None:
    decoded = samples(audio.ulaw_decode(bytes([0x00, 0x80, 0xFF, 0x7F, 0x70])))
    assert decoded.tolist() == [-32124, 32124, 0, 0, -120]


def test_alaw_decodes_the_g711_reference_values() -> None:
    decoded = samples(audio.alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A])))
    assert decoded.tolist() == [8, -8, 32256, -32256]


def test_ulaw_matches_the_reference_codec_for_every_sample_value() -> None:
    assert audio.ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES, 2)
    assert audio.ulaw_decode(bytes(range(256))) == audioop.ulaw2lin(bytes(range(256)), 2)


def test_alaw_matches_the_reference_codec_for_every_sample_value() -> None:
    assert audio.alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES, 2)
    assert audio.alaw_decode(bytes(range(256))) == audioop.alaw2lin(bytes(range(256)), 2)


@pytest.mark.parametrize("fmt", [G711_ULAW, G711_ALAW])
def test_g711_roundtrip_keeps_a_tone_above_30_db_snr(fmt: AudioFormat) -> None:
    original = tone(440, 0.5, 8000)
    restored = audio.decode(audio.encode(original, fmt), fmt)
    noise = samples(restored) - samples(original)
    snr = 10 * np.log10(np.mean(samples(original) ** 2) / np.mean(noise**2))
    assert len(audio.encode(original, fmt)) == len(original) // 2
    assert snr > 30


@pytest.mark.parametrize(
    ("src", "dst"), [(24000, 16000), (16000, 24000), (8000, 16000), (22050, 24000), (22050, 16000)]
)
def test_resampling_keeps_duration_and_tone_frequency(src: int, dst: int) -> None:
    original = tone(1000, 2.0, src)
    converted = audio.resample(original, src, dst)
    assert len(converted) // 2 == int(np.ceil(len(original) // 2 * dst / src))
    assert peak_frequency(converted, dst) == pytest.approx(1000, abs=2)
    assert np.sqrt(np.mean(samples(converted) ** 2)) == pytest.approx(
        0.5 * 32768 / np.sqrt(2), rel=0.02
    )


def test_downsampling_removes_frequencies_above_the_new_nyquist() -> None:
    converted = audio.resample(tone(10_000, 1.0, 24000), 24000, 16000)
    level_db = 20 * np.log10(np.sqrt(np.mean(samples(converted) ** 2)) / (0.5 * 32768 / np.sqrt(2)))
    assert level_db < -50


def test_streaming_resampler_matches_one_shot_for_any_chunking() -> None:
    original = tone(700, 1.0, 24000)
    resampler = Resampler(24000, 16000)
    # Chunks of odd byte lengths split samples; the resampler must carry the odd byte.
    streamed = b"".join(
        resampler.push(original[i : i + 1001]) for i in range(0, len(original), 1001)
    )
    assert streamed + resampler.flush() == audio.resample(original, 24000, 16000)


def test_odd_pcm16_byte_count_is_rejected_with_a_catalogued_code() -> None:
    with pytest.raises(OddByteCount) as raised:
        audio.decode(b"\x00\x01\x02", PCM16_24K)
    assert raised.value.code == "invalid_audio"
    assert raised.value.status == 400


def test_wav_roundtrip_keeps_samples_and_rate() -> None:
    original = tone(300, 0.25, 16000)
    decoded = audio.wav_decode(audio.wav_encode(original, 16000))
    assert (decoded.pcm16, decoded.sample_rate) == (original, 16000)
    assert decoded.duration == pytest.approx(0.25)


def test_wav_decode_mixes_stereo_down_to_mono() -> None:
    left, right = samples(tone(300, 0.1, 8000)), np.zeros(800)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(np.stack([left, right], axis=1).astype("<i2").tobytes())
    decoded = audio.wav_decode(buffer.getvalue())
    assert decoded.sample_rate == 8000
    assert np.allclose(samples(decoded.pcm16), left / 2, atol=1)


def test_wav_header_for_a_stream_parses_as_wav() -> None:
    pcm = tone(300, 0.1, 24000)
    decoded = audio.wav_decode(audio.wav_header(24000, len(pcm)) + pcm)
    assert (decoded.pcm16, decoded.sample_rate) == (pcm, 24000)


def test_malformed_wav_is_rejected() -> None:
    with pytest.raises(MalformedAudio):
        audio.wav_decode(b"RIFF\x00\x00\x00\x00WAVEjunk")


def test_decode_audio_file_reads_compressed_audio(tmp_path: Path) -> None:
    import av

    path = tmp_path / "tone.flac"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=24000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            samples(tone(500, 1.0, 24000)).astype("<i2")[None, :], format="s16", layout="mono"
        )
        frame.sample_rate = 24000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    pcm = audio.decode_audio_file(path.read_bytes(), 16000)
    assert audio.duration_seconds(pcm, 16000) == pytest.approx(1.0, abs=0.01)
    assert peak_frequency(pcm, 16000) == pytest.approx(500, abs=2)


def test_decode_audio_file_rejects_garbage() -> None:
    with pytest.raises(MalformedAudio):
        audio.decode_audio_file(b"this is not audio at all" * 10)


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ({"type": "audio/pcm", "rate": 24000}, PCM16_24K),
        ({"type": "audio/pcm", "rate": 16000}, PCM16_16K),
        ({"type": "audio/pcmu"}, G711_ULAW),
        ({"type": "audio/pcma"}, G711_ALAW),
        ("pcm16", PCM16_24K),
        ("g711_ulaw", G711_ULAW),
        ("g711_alaw", G711_ALAW),
    ],
)
def test_audio_format_reads_openai_ga_and_beta_declarations(
    declared: object, expected: AudioFormat
) -> None:
    assert AudioFormat.parse(declared) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "declared",
    [
        {"type": "audio/pcm", "rate": 11025},
        {"type": "audio/mp3"},
        "opus",
        {"type": "audio/pcm", "rate": "fast"},
    ],
)
def test_unsupported_audio_formats_are_rejected(declared: object) -> None:
    with pytest.raises(UnsupportedAudioFormat) as raised:
        AudioFormat.parse(declared)  # type: ignore[arg-type]
    assert raised.value.code == "unsupported_audio_format"


def test_g711_at_another_rate_is_rejected() -> None:
    with pytest.raises(UnsupportedAudioFormat):
        AudioFormat("g711_ulaw", 16000)


def test_telephony_audio_converts_to_the_pipeline_rate() -> None:
    ulaw = audio.encode(tone(440, 1.0, 8000), G711_ULAW)
    pcm = audio.convert(ulaw, G711_ULAW, PCM16_16K)
    assert audio.duration_seconds(pcm, 16000) == pytest.approx(1.0)
    assert peak_frequency(pcm, 16000) == pytest.approx(440, abs=2)

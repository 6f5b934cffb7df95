"""Audio formats and codecs: PCM16, G.711 μ-law/A-law, resampling and WAV.

Everything inside the voice pipeline is mono little-endian PCM16; this module converts the
wire formats of the realtime protocol (PCM16 at 24 kHz or 16 kHz, G.711 at 8 kHz) to and
from it. `audioop` is deprecated (and gone in Python 3.13), so G.711 is done with numpy
lookup tables built from the ITU/Sun reference algorithm, and resampling is a numpy
polyphase windowed-sinc filter that also works on a stream of chunks.
"""

from __future__ import annotations

import io
import math
import wave
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from vocalis.core.errors import RequestError, register

INVALID_AUDIO = register(
    "invalid_audio",
    400,
    "Invalid audio",
    "Audio bytes do not match their declared format (odd PCM16 byte count, malformed WAV, "
    "undecodable file).",
)
UNSUPPORTED_AUDIO_FORMAT = register(
    "unsupported_audio_format",
    400,
    "Unsupported audio format",
    "The audio encoding or sample rate is not one Vocalis accepts (PCM16 at 8 to 48 kHz, "
    "G.711 μ-law/A-law at 8 kHz).",
)


class AudioError(RequestError):
    """Audio that cannot be used as declared."""

    code = INVALID_AUDIO


class OddByteCount(AudioError):
    """PCM16 data whose length is not a whole number of 2-byte samples."""


class MalformedAudio(AudioError):
    """A WAV or compressed file that cannot be decoded."""


class UnsupportedAudioFormat(AudioError):
    """An encoding or sample rate outside what the pipeline supports."""

    code = UNSUPPORTED_AUDIO_FORMAT


Encoding = Literal["pcm16", "g711_ulaw", "g711_alaw"]
PCM_RATES = frozenset({8000, 16000, 22050, 24000, 44100, 48000})
G711_RATE = 8000
Int16Array = npt.NDArray[np.int16]
Float32Array = npt.NDArray[np.float32]


# --- PCM16 ------------------------------------------------------------------------------
def check_pcm16(data: bytes) -> None:
    """Raise `OddByteCount` unless `data` holds whole 16-bit samples."""
    if len(data) % 2:
        raise OddByteCount(f"PCM16 audio needs an even number of bytes, got {len(data)}")


def pcm16_samples(data: bytes) -> Int16Array:
    """The samples of little-endian PCM16 bytes."""
    check_pcm16(data)
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def pcm16_to_float32(data: bytes) -> Float32Array:
    """PCM16 bytes as float32 in [-1, 1) (the form whisper and Silero take)."""
    return (pcm16_samples(data).astype(np.float32) / 32768.0).astype(np.float32)


def float32_to_pcm16(samples: npt.NDArray[np.floating[Any]]) -> bytes:
    """Float samples in [-1, 1] as PCM16 bytes, clipped."""
    scaled = np.clip(np.rint(np.asarray(samples, dtype=np.float64) * 32768.0), -32768, 32767)
    return scaled.astype("<i2").tobytes()


def duration_seconds(pcm16: bytes, sample_rate: int) -> float:
    """Duration of mono PCM16 bytes at `sample_rate`."""
    return len(pcm16) / 2 / sample_rate


def silence(seconds: float, sample_rate: int) -> bytes:
    """That many seconds of digital silence as PCM16."""
    return bytes(2 * round(seconds * sample_rate))


# --- G.711 (tables built once from the reference algorithm) ------------------------------
_SEG_ULAW_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_SEG_ALAW_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    # Sun g711.c st_14linear2ulaw on the 14 most significant bits, as audioop did.
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + 33
    seg = np.searchsorted(_SEG_ULAW_END, mag, side="left")
    uval = (seg << 4) | ((mag >> (seg + 1)) & 0xF)
    return ((np.where(seg >= 8, 0x7F, uval) ^ mask) & 0xFF).astype(np.uint8)


def _build_ulaw_decode() -> Int16Array:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    # Sun g711.c st_linear2alaw on the 13 most significant bits.
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_SEG_ALAW_END, mag, side="left")
    quant = np.where(seg < 2, mag >> 1, mag >> np.maximum(seg, 1)) & 0xF
    aval = (seg << 4) | quant
    return ((np.where(seg >= 8, 0x7F, aval) ^ mask) & 0xFF).astype(np.uint8)


def _build_alaw_decode() -> Int16Array:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ULAW_ENCODE = _build_ulaw_encode()
_ULAW_DECODE = _build_ulaw_decode()
_ALAW_ENCODE = _build_alaw_encode()
_ALAW_DECODE = _build_alaw_decode()


def ulaw_encode(pcm16: bytes) -> bytes:
    """PCM16 → G.711 μ-law, one byte per sample."""
    return _ULAW_ENCODE[pcm16_samples(pcm16).astype(np.int32) + 32768].tobytes()


def ulaw_decode(data: bytes) -> bytes:
    """G.711 μ-law → PCM16."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


def alaw_encode(pcm16: bytes) -> bytes:
    """PCM16 → G.711 A-law, one byte per sample."""
    return _ALAW_ENCODE[pcm16_samples(pcm16).astype(np.int32) + 32768].tobytes()


def alaw_decode(data: bytes) -> bytes:
    """G.711 A-law → PCM16."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


# --- resampling -------------------------------------------------------------------------
class Resampler:
    """Streaming polyphase resampler for mono PCM16 (Kaiser-windowed sinc, zero phase).

    Feed chunks with `push`, finish with `flush`; the concatenated output has
    `ceil(n_in * dst / src)` samples, so durations are kept exactly.
    """

    _BLOCK = 8192  # outputs computed per numpy pass, bounds temporary memory

    def __init__(self, src_rate: int, dst_rate: int, *, zero_crossings: int = 12) -> None:
        if src_rate <= 0 or dst_rate <= 0:
            raise UnsupportedAudioFormat(f"sample rates must be positive: {src_rate}, {dst_rate}")
        g = math.gcd(src_rate, dst_rate)
        self.src_rate, self.dst_rate = src_rate, dst_rate
        self._up, self._down = dst_rate // g, src_rate // g
        # Cut below the lower Nyquist frequency so downsampling does not alias.
        cutoff = min(1.0, self._up / self._down) * 0.94
        self._half = math.ceil(zero_crossings / cutoff)
        self._offsets = np.arange(-self._half + 1, self._half + 1)
        self._bank = self._filter_bank(cutoff, zero_crossings)
        self._buf = np.zeros(self._half, dtype=np.float32)  # zeros before the first sample
        self._buf_start = -self._half
        self._n_in = 0
        self._n_out = 0
        self._carry = b""

    def _filter_bank(self, cutoff: float, zero_crossings: int) -> npt.NDArray[np.float32]:
        phases = np.arange(self._up)[:, None] / self._up
        t = self._offsets[None, :] - phases
        window = np.kaiser(2 * self._half + 1, 8.0)
        # Evaluate the Kaiser window continuously at t by interpolating the sampled one.
        win = np.interp(t, np.arange(-self._half, self._half + 1), window, left=0.0, right=0.0)
        taps = cutoff * np.sinc(cutoff * t) * win
        taps /= taps.sum(axis=1, keepdims=True)  # unity gain at DC for every phase
        return taps.astype(np.float32)

    def push(self, pcm16: bytes) -> bytes:
        """Resample one chunk; returns the output samples that are already determined."""
        if self._up == self._down:
            return pcm16
        data = self._carry + pcm16
        self._carry = data[len(data) - len(data) % 2 :]
        samples = np.frombuffer(data[: len(data) - len(self._carry)], dtype="<i2")
        self._buf = np.concatenate([self._buf, samples.astype(np.float32)])
        self._n_in += len(samples)
        available = self._n_in - self._half
        end = (available * self._up - 1) // self._down + 1 if available > 0 else 0
        return self._produce(min(end, self._total_out()))

    def flush(self) -> bytes:
        """The remaining output, as if the input were followed by silence."""
        if self._up == self._down:
            return b""
        self._buf = np.concatenate([self._buf, np.zeros(self._half, dtype=np.float32)])
        return self._produce(self._total_out())

    def _total_out(self) -> int:
        return (self._n_in * self._up + self._down - 1) // self._down

    def _produce(self, end: int) -> bytes:
        parts: list[bytes] = []
        while self._n_out < end:
            stop = min(end, self._n_out + self._BLOCK)
            ns = np.arange(self._n_out, stop, dtype=np.int64)
            base = ns * self._down // self._up
            idx = base[:, None] - self._buf_start + self._offsets[None, :]
            out = np.einsum("ij,ij->i", self._buf[idx], self._bank[ns * self._down % self._up])
            parts.append(np.clip(np.rint(out), -32768, 32767).astype("<i2").tobytes())
            self._n_out = stop
        keep_from = self._n_out * self._down // self._up - self._half + 1
        drop = max(0, keep_from - self._buf_start)
        self._buf, self._buf_start = self._buf[drop:], self._buf_start + drop
        return b"".join(parts)


def resample(pcm16: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Resample a whole PCM16 buffer."""
    check_pcm16(pcm16)
    if src_rate == dst_rate:
        return pcm16
    resampler = Resampler(src_rate, dst_rate)
    return resampler.push(pcm16) + resampler.flush()


# --- wire formats -----------------------------------------------------------------------
@dataclass(frozen=True)
class AudioFormat:
    """An audio encoding at a sample rate, as declared by a client."""

    encoding: Encoding
    sample_rate: int

    def __post_init__(self) -> None:
        if self.encoding == "pcm16" and self.sample_rate not in PCM_RATES:
            raise UnsupportedAudioFormat(f"PCM16 at {self.sample_rate} Hz is not supported")
        if self.encoding in ("g711_ulaw", "g711_alaw") and self.sample_rate != G711_RATE:
            raise UnsupportedAudioFormat(f"{self.encoding} is 8000 Hz only")

    @property
    def bytes_per_second(self) -> int:
        """Bytes per second of mono audio in this format."""
        return self.sample_rate * (2 if self.encoding == "pcm16" else 1)

    @classmethod
    def parse(cls, value: str | Mapping[str, Any]) -> AudioFormat:
        """Read an OpenAI Realtime format: GA `{"type": "audio/pcm", "rate": 24000}` or beta `"pcm16"`."""
        if isinstance(value, str):
            names: dict[str, AudioFormat] = {
                "pcm16": PCM16_24K,
                "g711_ulaw": G711_ULAW,
                "g711_alaw": G711_ALAW,
            }
            if value not in names:
                raise UnsupportedAudioFormat(f"unknown audio format {value!r}")
            return names[value]
        kind = value.get("type")
        if kind == "audio/pcm":
            rate = value.get("rate", 24000)
            if not isinstance(rate, int) or isinstance(rate, bool):
                raise UnsupportedAudioFormat(f"audio/pcm rate must be an integer, got {rate!r}")
            return cls("pcm16", rate)
        if kind == "audio/pcmu":
            return G711_ULAW
        if kind == "audio/pcma":
            return G711_ALAW
        raise UnsupportedAudioFormat(f"unknown audio format type {kind!r}")

    def to_openai(self) -> dict[str, Any]:
        """This format in the OpenAI Realtime GA shape."""
        if self.encoding == "g711_ulaw":
            return {"type": "audio/pcmu"}
        if self.encoding == "g711_alaw":
            return {"type": "audio/pcma"}
        return {"type": "audio/pcm", "rate": self.sample_rate}


PCM16_24K = AudioFormat("pcm16", 24000)
PCM16_16K = AudioFormat("pcm16", 16000)
G711_ULAW = AudioFormat("g711_ulaw", G711_RATE)
G711_ALAW = AudioFormat("g711_alaw", G711_RATE)


def decode(data: bytes, fmt: AudioFormat) -> bytes:
    """Wire bytes in `fmt` → PCM16 at `fmt.sample_rate`."""
    if fmt.encoding == "g711_ulaw":
        return ulaw_decode(data)
    if fmt.encoding == "g711_alaw":
        return alaw_decode(data)
    check_pcm16(data)
    return data


def encode(pcm16: bytes, fmt: AudioFormat) -> bytes:
    """PCM16 at `fmt.sample_rate` → wire bytes in `fmt`."""
    if fmt.encoding == "g711_ulaw":
        return ulaw_encode(pcm16)
    if fmt.encoding == "g711_alaw":
        return alaw_encode(pcm16)
    check_pcm16(pcm16)
    return pcm16


def convert(data: bytes, src: AudioFormat, dst: AudioFormat) -> bytes:
    """Wire bytes in `src` → wire bytes in `dst` (decode, resample, encode)."""
    return encode(resample(decode(data, src), src.sample_rate, dst.sample_rate), dst)


# --- files ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecodedAudio:
    """Mono PCM16 and its sample rate."""

    pcm16: bytes
    sample_rate: int

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return duration_seconds(self.pcm16, self.sample_rate)


def wav_encode(pcm16: bytes, sample_rate: int) -> bytes:
    """Mono PCM16 as a complete WAV file."""
    check_pcm16(pcm16)
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm16)
    return out.getvalue()


def wav_header(sample_rate: int, data_bytes: int = 0xFFFFFFFF - 36) -> bytes:
    """A 44-byte mono PCM16 WAV header; the default size marks a stream of unknown length."""
    riff = min(data_bytes + 36, 0xFFFFFFFF)
    return (
        b"RIFF"
        + riff.to_bytes(4, "little")
        + b"WAVEfmt "
        + (16).to_bytes(4, "little")
        + (1).to_bytes(2, "little")
        + (1).to_bytes(2, "little")
        + sample_rate.to_bytes(4, "little")
        + (sample_rate * 2).to_bytes(4, "little")
        + (2).to_bytes(2, "little")
        + (16).to_bytes(2, "little")
        + b"data"
        + data_bytes.to_bytes(4, "little")
    )


def wav_decode(data: bytes) -> DecodedAudio:
    """A PCM WAV file (8/16/24/32-bit, any channels) as mono PCM16."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            channels, width = wav.getnchannels(), wav.getsampwidth()
            rate, frames = wav.getframerate(), wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise MalformedAudio(f"not a readable PCM WAV file: {exc}") from exc
    if width not in (1, 2, 3, 4) or channels < 1 or rate <= 0:
        raise UnsupportedAudioFormat(f"WAV with {width}-byte samples is not supported")
    usable = len(frames) - len(frames) % (width * channels)
    if width == 2 and channels == 1:
        return DecodedAudio(frames[:usable], rate)
    samples = _wav_samples_to_float(frames[:usable], width).reshape(-1, channels).mean(axis=1)
    return DecodedAudio(float32_to_pcm16(samples), rate)


def _wav_samples_to_float(frames: bytes, width: int) -> npt.NDArray[np.float64]:
    if width == 1:  # 8-bit WAV is unsigned
        return (np.frombuffer(frames, np.uint8).astype(np.float64) - 128.0) / 128.0
    if width == 3:
        raw = np.frombuffer(frames, np.uint8).reshape(-1, 3).astype(np.int32)
        values = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        return np.where(values >= 1 << 23, values - (1 << 24), values) / float(1 << 23)
    dtype = "<i2" if width == 2 else "<i4"
    return np.frombuffer(frames, dtype).astype(np.float64) / float(1 << (8 * width - 1))


def decode_audio_file(data: bytes, sample_rate: int = 16000) -> bytes:
    """Any audio file (WAV natively; MP3, OGG, FLAC, WebM… via PyAV) as mono PCM16 at `sample_rate`."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        decoded = wav_decode(data)
        return resample(decoded.pcm16, decoded.sample_rate, sample_rate)
    try:
        from faster_whisper.audio import decode_audio  # PyAV, installed with faster-whisper
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise UnsupportedAudioFormat("only WAV is supported without faster-whisper/PyAV") from exc
    try:
        samples = decode_audio(io.BytesIO(data), sampling_rate=sample_rate)
    except Exception as exc:  # PyAV raises many error types for bad input
        raise MalformedAudio(f"cannot decode audio file: {exc}") from exc
    return float32_to_pcm16(samples)

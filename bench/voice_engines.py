"""Benchmark the offline voice engines on this machine.

Reports, for the default offline stack:
- STT (faster-whisper tiny.en, CPU int8): latency and real-time factor per utterance, WER;
- TTS (espeak-ng): time to first audio chunk and real-time factor per sentence;
- VAD (Silero ONNX): throughput as a multiple of real time.

Run: `.venv/bin/python bench/voice_engines.py [--rounds N] [--beam-size B]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time

from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.adapters.faster_whisper_stt import FasterWhisperSTT
from vocalis.adapters.silero_vad import SileroVAD
from vocalis.voice.audio import duration_seconds, resample
from vocalis.voice.wer import word_error_rate

SENTENCES = [
    "What is the refund policy for damaged items?",
    "How long does shipping take to Canada?",
    "Can I change the delivery address after ordering?",
    "Please tell me the opening hours of the London office.",
    "Which payment methods do you accept?",
    "My password reset email never arrived.",
    "Is there a discount for annual subscriptions?",
    "Do you deliver orders over 50 pounds for free?",
]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def summary(name: str, values: list[float], unit: str = "s") -> str:
    """One line with p50/p95/mean of a series."""
    return (
        f"{name:<28} p50 {percentile(values, 50):8.4f}{unit}  p95 {percentile(values, 95):8.4f}{unit}"
        f"  mean {statistics.fmean(values):8.4f}{unit}  (n={len(values)})"
    )


async def bench_tts(tts: EspeakTTS, rounds: int) -> list[bytes]:
    """Time to first chunk and real-time factor of espeak-ng; returns the audio per sentence."""
    ttfb, rtf, audio = [], [], []
    for round_ in range(rounds):
        for text in SENTENCES:
            started = time.perf_counter()
            chunks: list[bytes] = []
            async for chunk in tts.synthesize_stream(text):
                if not chunks:
                    ttfb.append(time.perf_counter() - started)
                chunks.append(chunk)
            elapsed = time.perf_counter() - started
            pcm = b"".join(chunks)
            rtf.append(elapsed / duration_seconds(pcm, tts.sample_rate))
            if round_ == 0:
                audio.append(pcm)
    print(summary("TTS time to first byte", ttfb))
    print(summary("TTS real-time factor", rtf, "x"))
    return audio


async def bench_stt(stt: FasterWhisperSTT, audio_16k: list[bytes], rounds: int) -> None:
    """Latency, real-time factor and WER of faster-whisper on the synthesised sentences."""
    latency, rtf, hypotheses = [], [], []
    await stt.transcribe(audio_16k[0], 16000)  # warm-up: first call allocates buffers
    for round_ in range(rounds):
        for pcm in audio_16k:
            started = time.perf_counter()
            transcript = await stt.transcribe(pcm, 16000)
            elapsed = time.perf_counter() - started
            latency.append(elapsed)
            rtf.append(elapsed / duration_seconds(pcm, 16000))
            if round_ == 0:
                hypotheses.append(transcript.text)
    print(summary("STT latency", latency))
    print(summary("STT real-time factor", rtf, "x"))
    print(f"{'STT word error rate':<28} {word_error_rate(SENTENCES, hypotheses):.1%}")


async def bench_concurrent_stt(
    stt: FasterWhisperSTT, audio_16k: list[bytes], sessions: int
) -> None:
    """Wall time for `sessions` simultaneous transcriptions (bounded by the worker pool)."""
    started = time.perf_counter()
    await asyncio.gather(*(stt.transcribe(pcm, 16000) for pcm in audio_16k[:sessions]))
    elapsed = time.perf_counter() - started
    print(f"{f'STT {sessions} at once (wall)':<28} {elapsed:8.4f}s")


def bench_vad(vad: SileroVAD, audio_16k: list[bytes]) -> None:
    """Silero throughput, streaming 20 ms chunks as a live session would."""
    pcm = b"".join(audio_16k)
    stream = vad.new_stream()
    started = time.perf_counter()
    for i in range(0, len(pcm), 640):
        stream.process(pcm[i : i + 640])
    elapsed = time.perf_counter() - started
    print(
        f"{'VAD speed (20 ms chunks)':<28} {duration_seconds(pcm, 16000) / elapsed:8.0f}x real time"
    )


async def main() -> None:
    """Run every benchmark and print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=1, help="STT worker threads")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    tts = EspeakTTS()
    stt = FasterWhisperSTT(beam_size=args.beam_size, max_concurrency=args.concurrency)
    started = time.perf_counter()
    await stt.aload()
    print(f"{'STT model verify + load':<28} {time.perf_counter() - started:8.4f}s")
    audio = await bench_tts(tts, args.rounds)
    audio_16k = [resample(pcm, tts.sample_rate, 16000) for pcm in audio]
    await bench_stt(stt, audio_16k, args.rounds)
    await bench_concurrent_stt(stt, audio_16k, 4)
    bench_vad(SileroVAD(), audio_16k)
    stt.close()


if __name__ == "__main__":
    asyncio.run(main())

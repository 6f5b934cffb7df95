"""Greedy or beam search, 30 s or 10 s window: what each costs and buys for tiny.en.

The 20 questions of `bench/voice_engines.py` are spoken by espeak-ng and by hibari (two
voices, neither chosen for Whisper), resampled to 16 kHz and transcribed by tiny.en on one
intra-op thread (CPU int8) with beam 1 (greedy) and beam 5, each over Whisper's padded 30 s
window (`transcribe`, what the REST transcription endpoints use) and over the short window
live voice turns use (`transcribe_utterance`), side by side in one run: word error rate
over the set, and latency per utterance (p50/p95, after one warm-up call each).
Usage: `.venv/bin/python bench/whisper_decoding.py [--json bench/results/whisper_decoding.json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` from a checkout
from bench.voice_engines import QUESTIONS

from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.adapters.faster_whisper_stt import FasterWhisperSTT
from vocalis.adapters.hibari_tts import HibariTTS
from vocalis.core.audio import resample
from vocalis.ports.tts import TextToSpeech, synthesize
from vocalis.voice.wer import word_error_rate


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def spoken(voice: TextToSpeech) -> list[bytes]:
    """Each question as 16 kHz PCM16."""
    return [resample(await synthesize(voice, text), voice.sample_rate, 16000) for text in QUESTIONS]


async def run(threads: int) -> dict[str, Any]:
    voices: dict[str, TextToSpeech] = {"espeak-ng": EspeakTTS(), "hibari": HibariTTS()}
    audio = {name: await spoken(voice) for name, voice in voices.items()}
    results: dict[str, Any] = {}
    for beam in (1, 5):
        stt = FasterWhisperSTT(beam_size=beam, cpu_threads=threads)
        await stt.aload()
        await stt.transcribe(audio["espeak-ng"][0], 16000, "en")  # warm-up
        await stt.transcribe_utterance(audio["espeak-ng"][0], 16000, "en")
        paths = {"30 s": stt.transcribe, "10 s": stt.transcribe_utterance}
        for (name, utterances), (window, path) in itertools.product(audio.items(), paths.items()):
            heard, seconds = [], []
            for pcm in utterances:
                started = time.perf_counter()
                transcript = await path(pcm, 16000, "en")
                seconds.append(time.perf_counter() - started)
                heard.append(transcript.text)
            results[f"beam{beam}/{window}/{name}"] = {
                "beam_size": beam,
                "window": window,
                "voice": name,
                "wer": round(word_error_rate(QUESTIONS, heard), 4),
                "latency_ms_p50": round(statistics.median(seconds) * 1000, 1),
                "latency_ms_p95": round(percentile(seconds, 95) * 1000, 1),
                "utterances": len(utterances),
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = asyncio.run(run(args.threads))
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },
        "threads": args.threads,
        "results": results,
    }
    print("| decoding | window | voice | WER | p50 | p95 |\n|---|---|---|---|---|---|")
    for row in results.values():
        print(
            f"| beam {row['beam_size']} | {row['window']} | {row['voice']} | {row['wer'] * 100:.1f} % | "
            f"{row['latency_ms_p50']:.0f} ms | {row['latency_ms_p95']:.0f} ms |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Voice-turn latency of the offline stack, end to end over the realtime WebSocket.

    .venv/bin/python bench/voice_latency.py [--turns 12] [--sessions 1] [--json out.json]

Starts the app (embedded SQLite and Redis, offline faster-whisper tiny.en, espeak-ng,
Silero VAD, the extractive responder over an in-memory knowledge base) on a local uvicorn
server, and has `--sessions` callers talk to it at once through the official `openai`
SDK's realtime client, each asking `--turns` spoken questions (espeak-ng speech, 24 kHz
PCM, streamed in 20 ms frames at real-time pace, then silence as from an open mic).

Reported, as p50/p95/mean over all turns:
- `first_audio_byte` — the voice-turn latency, end of the user's speech to the first byte
  of the agent's answer (server-measured; what `vocalis_voice_turn_latency_seconds` records),
  and its parts: `endpointing` (the silence that ends the turn), `stt` (transcription),
  `first_token` (agent: retrieval and the first words), `tts_first_byte` (synthesis);
- `client_first_audio` — the same as the caller sees it: last speech frame sent → first
  `response.output_audio.delta` received.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import uvicorn

from vocalis.adapters import embedded_redis
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.agents.runtime import RETRIEVER_EXTRA
from vocalis.app import create_app
from vocalis.core.backends import build_backends
from vocalis.core.migrate import upgrade
from vocalis.core.scopes import Role
from vocalis.orgs import service as orgs
from vocalis.ports.retriever import InMemoryRetriever, Passage
from vocalis.ports.tts import synthesize
from vocalis.settings import Settings
from vocalis.voice import api as voice_api
from vocalis.voice import audio

RATE = 24000
CHUNK_MS = 20
PASSAGES = {
    "refunds": "Our refund policy: a refund is given within thirty days of purchase.",
    "hours": "The support line is open Monday to Friday from nine in the morning until five.",
    "shipping": "Shipping to Canada takes five to seven business days.",
    "payments": "We accept Visa, Mastercard and PayPal for every order.",
    "returns": "Returns are free when the parcel is sent back with the prepaid label.",
    "delivery": "Delivery in London usually takes one working day.",
}
QUESTIONS = [
    "What is your refund policy?",
    "When is the support line open?",
    "How long does shipping to Canada take?",
    "Which payment methods do you accept?",
    "Are returns free?",
    "How long does delivery in London take?",
]
PARTS = ("endpointing", "stt", "first_token", "tts_first_byte", "first_audio_byte")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def cpu_model() -> str:
    """The processor's name (Linux), or what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", ws_ping_interval=None)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit("the server did not start")
        time.sleep(0.05)
    return server, thread, port


async def _speech(tts: EspeakTTS, text: str) -> bytes:
    return audio.resample(await synthesize(tts, text), tts.sample_rate, RATE)


async def _caller(
    base_url: str, key: str, agent_id: str, questions: list[bytes]
) -> list[dict[str, float]]:
    """One caller asking each question in turn; one timing record per turn."""
    client = openai.AsyncOpenAI(api_key=key, base_url=f"{base_url}/v1")
    step = RATE * 2 * CHUNK_MS // 1000
    silence = bytes(step)
    results: list[dict[str, float]] = []
    async with client.realtime.connect(model=agent_id) as connection:
        await connection.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["audio"],
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}},
            }
        )
        state: dict[str, Any] = {"speech_end": None, "first_audio": None, "done": None}
        turn_done = asyncio.Event()

        async def read() -> None:
            async for event in connection:
                if event.type == "response.output_audio.delta" and state["first_audio"] is None:
                    state["first_audio"] = time.monotonic()
                elif event.type == "response.done":
                    state["done"] = event
                    turn_done.set()

        reader = asyncio.create_task(read())
        started, tick = time.monotonic(), 0
        for question in questions:
            state.update(speech_end=None, first_audio=None, done=None)
            turn_done.clear()
            frames = [question[i : i + step] for i in range(0, len(question), step)]
            while not turn_done.is_set():  # speak, then an open mic's silence until answered
                frame = frames.pop(0) if frames else silence
                await connection.input_audio_buffer.append(audio=base64.b64encode(frame).decode())
                if not frames and state["speech_end"] is None:
                    state["speech_end"] = time.monotonic()
                tick += 1
                await asyncio.sleep(max(0.0, started + tick * CHUNK_MS / 1000 - time.monotonic()))
            done = state["done"]
            latency = dict((done.model_extra or {}).get("vocalis", {}).get("latency_ms", {}))
            if state["first_audio"] is not None:
                latency["client_first_audio"] = (state["first_audio"] - state["speech_end"]) * 1000
            results.append(latency)
        reader.cancel()
    return results


async def run(turns: int, sessions: int) -> dict[str, Any]:
    """Start the stack, run the callers, summarise."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(env="development", data_dir=Path(tmp), log_level="WARNING")
        await asyncio.to_thread(upgrade, settings.resolved_database_url)
        backends = await build_backends(settings)
        app = create_app(settings)
        if not any(r.path == "/v1/audio/speech" for r in app.routes if hasattr(r, "path")):
            app.include_router(voice_api.router)
        server, thread, port = await asyncio.to_thread(_serve, app)
        base_url = f"http://127.0.0.1:{port}"
        try:
            async with backends.database.session() as session:
                org, _ = await orgs.create_org(
                    session=session, name="Bench", owner_email="bench@example.test"
                )
                key = await orgs.create_api_key(
                    session=session, org_id=org.id, name="bench", role=Role.OWNER
                )
            retriever = InMemoryRetriever()
            retriever.add(
                org.id,
                "kb_bench",
                [
                    Passage(text=text, document_id=f"doc_{n}", document_name=f"{n}.md", chunk_id=n)
                    for n, text in PASSAGES.items()
                ],
            )
            app.state.backends.extras[RETRIEVER_EXTRA] = retriever
            async with httpx.AsyncClient(
                base_url=base_url, headers={"Authorization": f"Bearer {key.plaintext}"}
            ) as http:
                agent = await http.post(
                    "/v1/agents",
                    json={"name": "Bench", "instructions": "", "knowledge_base_ids": ["kb_bench"]},
                )
                agent.raise_for_status()
            tts = EspeakTTS()
            speech = [await _speech(tts, q) for q in QUESTIONS]
            plans = [[speech[(s + t) % len(speech)] for t in range(turns)] for s in range(sessions)]
            # One warm-up turn loads the models, so they do not count.
            await _caller(base_url, key.plaintext, agent.json()["id"], speech[:1])
            began = time.monotonic()
            per_session = await asyncio.gather(
                *(_caller(base_url, key.plaintext, agent.json()["id"], p) for p in plans)
            )
            wall = time.monotonic() - began
        finally:
            server.should_exit = True
            await asyncio.to_thread(thread.join, 30)
            await backends.close()
            if not settings.redis_url:  # the embedded Redis server outlives the process
                await asyncio.to_thread(embedded_redis.stop, settings.data_dir)
    records = [r for session in per_session for r in session]
    summary: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "processor": cpu_model(),
            "python": platform.python_version(),
        },
        "turns": len(records),
        "sessions": sessions,
        "wall_s": round(wall, 1),
        "latency_ms": {},
    }
    for part in (*PARTS, "client_first_audio"):
        values = [r[part] for r in records if part in r]
        if values:
            summary["latency_ms"][part] = {
                "p50": round(percentile(values, 50), 1),
                "p95": round(percentile(values, 95), 1),
                "mean": round(statistics.fmean(values), 1),
                "n": len(values),
            }
    return summary


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=12, help="questions per caller")
    parser.add_argument("--sessions", type=int, default=1, help="simultaneous callers")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    summary = asyncio.run(run(args.turns, args.sessions))
    machine = summary["machine"]
    print(
        f"machine: {machine['machine']} {machine['processor']}, {machine['cpus']} CPUs, "
        f"Python {machine['python']}"
    )
    print(
        f"{summary['turns']} turns, {summary['sessions']} simultaneous caller(s), "
        f"{summary['wall_s']} s"
    )
    print(f"{'latency (ms)':<22}{'p50':>9}{'p95':>9}{'mean':>9}")
    for part, stats in summary["latency_ms"].items():
        print(f"{part:<22}{stats['p50']:>9.1f}{stats['p95']:>9.1f}{stats['mean']:>9.1f}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

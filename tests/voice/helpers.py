"""Talking to the voice server like a caller: synthesised speech streamed at real-time pace,
server events collected as they arrive, audio checked for being real speech."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import openai
import websockets
from websockets.asyncio.client import ClientConnection

from tests.agents_api.harness import LiveServer
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.core import audio
from vocalis.core.audio import AudioFormat
from vocalis.ports.retriever import Passage
from vocalis.ports.tts import TextToSpeech, synthesize
from vocalis.voice.wer import word_error_rate

WARRANTY = (
    "The warranty covers every appliance for two full years from the day it is delivered to "
    "your home, including all parts and labour. When the warranty has ended, we still repair "
    "any appliance for a fixed fee of forty pounds and always send a quote before starting."
)
KNOWLEDGE = [
    Passage(
        text="Our refund policy: a refund is given within thirty days of purchase with the receipt.",
        document_id="doc_refunds",
        document_name="refunds.md",
        chunk_id="chk_refunds",
    ),
    Passage(
        text="The support line is open Monday to Friday from nine in the morning until five.",
        document_id="doc_hours",
        document_name="hours.md",
        chunk_id="chk_hours",
    ),
    Passage(
        text="Shipping to Canada takes five to seven business days.",
        document_id="doc_shipping",
        document_name="shipping.md",
        chunk_id="chk_shipping",
    ),
    Passage(
        text=WARRANTY,
        document_id="doc_warranty",
        document_name="warranty.md",
        chunk_id="chk_warranty",
    ),
    Passage(
        text="We accept Visa, Mastercard and PayPal for every order.",
        document_id="doc_payments",
        document_name="payments.md",
        chunk_id="chk_payments",
    ),
]

POLICIES_MARKDOWN = "# Store policies\n\n" + "\n\n".join(
    f"## {p.document_name.removesuffix('.md').title()}\n\n{p.text}" for p in KNOWLEDGE
)

FORMATS: dict[str, dict[str, Any]] = {
    "pcm24": {"type": "audio/pcm", "rate": 24000},
    "pcm16": {"type": "audio/pcm", "rate": 16000},
    "ulaw": {"type": "audio/pcmu"},
    "alaw": {"type": "audio/pcma"},
}


@dataclass
class VoiceServer:
    """The live server and the knowledge-base agent to call."""

    live: LiveServer
    agent_id: str

    @property
    def ws_url(self) -> str:
        """The realtime URL for the agent."""
        return (
            self.live.base_url.replace("http://", "ws://") + f"/v1/realtime?model={self.agent_id}"
        )

    def openai(self, api_key: str | None = None) -> openai.AsyncOpenAI:
        """The official OpenAI client pointed at the server."""
        return openai.AsyncOpenAI(
            api_key=api_key or self.live.tenant.key, base_url=f"{self.live.base_url}/v1"
        )

    def connect(self, *, query: str | None = None, key: str | None = None) -> Any:
        """A raw WebSocket connection (for frames the SDK would never send)."""
        url = self.ws_url if query is None else self.ws_url.split("?")[0] + "?" + query
        headers = {"Authorization": f"Bearer {key or self.live.tenant.key}"}
        return websockets.connect(url, additional_headers=headers, max_size=None)


def wire_format(name: str) -> AudioFormat:
    """The codec of one of `FORMATS`."""
    return AudioFormat.parse(FORMATS[name])


async def speech(espeak: TextToSpeech, text: str, fmt: AudioFormat) -> bytes:
    """`text` spoken by `espeak` (espeak-ng unless a test brings another caller voice), as
    wire bytes in `fmt`."""
    pcm = await synthesize(espeak, text)
    return audio.encode(audio.resample(pcm, espeak.sample_rate, fmt.sample_rate), fmt)


def silence_in(fmt: AudioFormat, seconds: float) -> bytes:
    """Silence as wire bytes in `fmt`."""
    return audio.encode(audio.silence(seconds, fmt.sample_rate), fmt)


def chunks(data: bytes, fmt: AudioFormat, chunk_ms: int) -> list[bytes]:
    """`data` cut into frames of `chunk_ms` (whole samples)."""
    step = fmt.bytes_per_second * chunk_ms // 1000
    return [data[i : i + step] for i in range(0, len(data), step)]


async def stream(
    send: Callable[[bytes], Awaitable[None]],
    data: bytes,
    fmt: AudioFormat,
    *,
    chunk_ms: int = 20,
    speed: float = 1.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Send `data` in `chunk_ms` frames on a real-time schedule (`speed` times real time)."""
    started = time.monotonic()
    for index, chunk in enumerate(chunks(data, fmt, chunk_ms)):
        if stop is not None and stop.is_set():
            return
        await send(chunk)
        due = started + (index + 1) * chunk_ms / 1000.0 / speed
        await asyncio.sleep(max(0.0, due - time.monotonic()))


def pcm_of(deltas: list[str], fmt: AudioFormat) -> bytes:
    """Concatenated `response.output_audio.delta` payloads, decoded to PCM16."""
    raw = b"".join(base64.b64decode(d) for d in deltas)
    return audio.decode(raw, fmt)


def loudness(pcm16: bytes) -> float:
    """RMS level of PCM16 (silence is 0; speech is in the thousands)."""
    samples = np.frombuffer(pcm16, "<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0


@dataclass
class Received:
    """Server events with their arrival times, filled by a background reader."""

    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, event: dict[str, Any]) -> None:
        """Record an event."""
        self.events.append((time.monotonic(), event))
        self._changed.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        """Events of one type, in order."""
        return [e for _, e in self.events if e["type"] == kind]

    def types(self) -> list[str]:
        """Every event type, in order."""
        return [e["type"] for _, e in self.events]

    async def wait_for(
        self,
        kind: str,
        *,
        count: int = 1,
        timeout: float = 30.0,
        where: Callable[[dict[str, Any]], bool] = lambda e: True,
    ) -> dict[str, Any]:
        """The `count`-th event of `kind` matching `where` (waiting for it)."""
        deadline = time.monotonic() + timeout
        while True:
            matching = [e for e in self.of(kind) if where(e)]
            if len(matching) >= count:
                return matching[count - 1]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {kind} #{count}; got {self.types()[-30:]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def events_of(self, response_id: str) -> list[dict[str, Any]]:
        """The events of one response, in order."""
        return [e for _, e in self.events if e.get("response_id") == response_id]

    def at(self, event: dict[str, Any]) -> float:
        """When an event arrived."""
        return next(t for t, e in self.events if e is event)


async def read_sdk(connection: Any, into: Received) -> None:
    """Read an SDK realtime connection into `into` (each event also parsed by the SDK)."""
    while True:
        try:
            raw = await connection.recv_bytes()
        except websockets.ConnectionClosed:
            return
        parsed = connection.parse_event(raw)  # the SDK's own models must accept every event
        event = json.loads(raw)
        assert parsed.type == event["type"]
        into.add(event)


async def read_raw(ws: ClientConnection, into: Received) -> None:
    """Read a raw WebSocket into `into` until it closes."""
    async for message in ws:
        into.add(json.loads(message))


def audio_update(fmt_name: str, **turn_detection: Any) -> dict[str, Any]:
    """A `session.update` body asking for spoken replies in one format both ways."""
    detection: dict[str, Any] | None = (
        None if turn_detection.get("manual") else {"type": "server_vad", **turn_detection}
    )
    fmt = FORMATS[fmt_name]
    return {
        "type": "realtime",
        "output_modalities": ["audio"],
        "audio": {
            "input": {"format": fmt, "turn_detection": detection},
            "output": {"format": fmt},
        },
    }


@dataclass
class Utterance:
    """Audio queued on a microphone, and when it started and finished being sent."""

    frames: list[bytes]
    started: asyncio.Future[float]
    finished: asyncio.Future[float]


class Microphone:
    """A caller's microphone: frames every `chunk_ms` in real time, silence between utterances."""

    def __init__(
        self, send: Callable[[bytes], Awaitable[None]], fmt: AudioFormat, chunk_ms: int = 20
    ) -> None:
        self._send, self._fmt, self._chunk_ms = send, fmt, chunk_ms
        self._queue: list[Utterance] = []
        self._silence = silence_in(fmt, chunk_ms / 1000.0)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Microphone:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def say(self, data: bytes) -> Utterance:
        """Queue an utterance (sent after those queued before it)."""
        loop = asyncio.get_running_loop()
        utterance = Utterance(
            chunks(data, self._fmt, self._chunk_ms), loop.create_future(), loop.create_future()
        )
        self._queue.append(utterance)
        return utterance

    async def _run(self) -> None:
        began, tick = time.monotonic(), 0
        while True:
            frame = self._silence
            if self._queue:
                current = self._queue[0]
                if not current.started.done():
                    current.started.set_result(time.monotonic())
                frame = current.frames.pop(0)
                if not current.frames:
                    self._queue.pop(0)
                    current.finished.set_result(time.monotonic())
            await self._send(frame)
            tick += 1
            await asyncio.sleep(max(0.0, began + tick * self._chunk_ms / 1000.0 - time.monotonic()))


# --- one spoken scenario, any transport ---------------------------------------------------------
SPOKEN_QUESTIONS = {
    "What is your refund policy?": "thirty days",
    "When is the support line open?": "Monday to Friday",
    "How long does shipping to Canada take?": "five to seven business days",
}
MAX_WER = 0.15
LATENCY_PARTS = ("endpointing", "stt", "first_token", "first_audio_byte")


@dataclass
class SpokenTurn:
    """One question and its answer, as a caller on some transport saw them."""

    transcript: str  # what the server heard the caller say
    status: str
    answer: str  # the transcript of the spoken answer
    audio: bytes  # the answer's audio, PCM16
    sample_rate: int
    citations: list[dict[str, Any]]
    latency_ms: dict[str, float]


class SpokenCall(Protocol):
    """A caller's connection on one transport."""

    fmt: AudioFormat

    async def send(self, chunk: bytes) -> None:
        """Send one frame of the caller's audio (wire bytes in `fmt`)."""

    async def answered(self, count: int, timeout: float) -> None:
        """Wait until `count` answers are done."""

    def turns(self) -> list[SpokenTurn]:
        """The turns so far."""


async def ask_spoken_questions(
    call: SpokenCall, espeak: EspeakTTS, questions: Iterable[str] = SPOKEN_QUESTIONS
) -> list[SpokenTurn]:
    """Ask each question aloud, pausing after it as a caller does, and wait for each answer."""
    for number, question in enumerate(questions, start=1):
        await stream(call.send, await speech(espeak, question, call.fmt), call.fmt)
        await open_mic_until_answered(call, number)
    return call.turns()


async def open_mic_until_answered(call: SpokenCall, number: int, timeout: float = 60) -> None:
    """Keep the microphone open (silence in real time) until the `number`-th answer is done.

    Turns end on the audio's own clock: a caller whose microphone goes on streaming ends
    its turn after the pause the turn model asks for (up to `voice_turn_max_silence_ms`).
    """
    answered = asyncio.create_task(call.answered(number, timeout=timeout))
    frame, chunk_s = silence_in(call.fmt, 0.02), 0.02
    try:
        next_at = time.monotonic()
        while not answered.done():
            await call.send(frame)
            next_at += chunk_s
            await asyncio.wait({answered}, timeout=max(0.0, next_at - time.monotonic()))
        await answered
    finally:
        answered.cancel()


def check_spoken_answers(turns: list[SpokenTurn], questions: dict[str, str]) -> None:
    """Accurate transcripts, and spoken answers that state the fact and cite the knowledge."""
    assert len(turns) == len(questions)
    transcripts = [turn.transcript for turn in turns]
    assert word_error_rate(list(questions), transcripts) <= MAX_WER, transcripts
    for number, (turn, fact) in enumerate(zip(turns, questions.values(), strict=True)):
        assert turn.status == "completed"
        assert len(turn.audio) % 2 == 0
        assert 1.0 < audio.duration_seconds(turn.audio, turn.sample_rate) < 20.0
        assert loudness(turn.audio) > 500, f"answer {number} is silent"
        assert fact.lower() in turn.answer.lower()
        assert turn.citations, "the answer cites the knowledge base"
        for part in LATENCY_PARTS:
            assert turn.latency_ms[part] > 0, part


class OpenAIRealtimeCall:
    """The official SDK's realtime client, streaming `input_audio_buffer.append` (24 kHz PCM)."""

    def __init__(self, connection: Any, received: Received) -> None:
        self.connection, self.received = connection, received
        self.fmt = wire_format("pcm24")

    async def send(self, chunk: bytes) -> None:
        """Append one frame."""
        await self.connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())

    async def answered(self, count: int, timeout: float) -> None:
        """Wait for the `count`-th `response.done`."""
        await self.received.wait_for("response.done", count=count, timeout=timeout)

    def turns(self) -> list[SpokenTurn]:
        """Each `response.done` with the transcript it answered and its audio."""
        heard = self.received.of("conversation.item.input_audio_transcription.completed")
        turns = []
        for transcribed, done in zip(heard, self.received.of("response.done"), strict=False):
            response = done["response"]
            mine = [
                e
                for e in self.received.events_of(response["id"])
                if e["type"] == "response.output_audio.delta"
            ]
            answer = next(
                e["transcript"]
                for e in self.received.events_of(response["id"])
                if e["type"] == "response.output_audio_transcript.done"
            )
            turns.append(
                SpokenTurn(
                    transcript=transcribed["transcript"],
                    status=response["status"],
                    answer=answer,
                    audio=pcm_of([e["delta"] for e in mine], self.fmt),
                    sample_rate=self.fmt.sample_rate,
                    citations=done["vocalis"]["citations"],
                    latency_ms=done["vocalis"]["latency_ms"],
                )
            )
        return turns


@contextlib.asynccontextmanager
async def openai_realtime_call(server: VoiceServer) -> AsyncIterator[OpenAIRealtimeCall]:
    """A realtime session asking for spoken answers in 24 kHz PCM."""
    received = Received()
    client = server.openai()
    async with client.realtime.connect(model=server.agent_id) as connection:
        reader = asyncio.create_task(read_sdk(connection, received))
        await received.wait_for("session.created")
        await connection.session.update(session=audio_update("pcm24"))  # type: ignore[arg-type]
        await received.wait_for("session.updated")
        try:
            yield OpenAIRealtimeCall(connection, received)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


class RawPcmCall:
    """The raw-PCM WebSocket: binary 16 kHz PCM16 both ways, JSON events."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.fmt = wire_format("pcm16")
        self.received = Received()
        self.audio: dict[str, bytearray] = {}
        self._response: str | None = None

    async def read(self) -> None:
        """Read events and audio until the socket closes (audio belongs to the open response)."""
        async for message in self.ws:
            if isinstance(message, bytes):
                if self._response is not None:
                    self.audio[self._response] += message
                continue
            event = json.loads(message)
            if event["type"] == "response.started":
                self._response = event["response_id"]
                self.audio[self._response] = bytearray()
            self.received.add(event)

    async def send(self, chunk: bytes) -> None:
        """Send one binary frame."""
        await self.ws.send(chunk)

    async def answered(self, count: int, timeout: float) -> None:
        """Wait for the `count`-th `response.done`."""
        await self.received.wait_for("response.done", count=count, timeout=timeout)

    def turns(self) -> list[SpokenTurn]:
        """Each `response.done` with the caller's transcript it answered and its audio."""
        heard = [e for e in self.received.of("transcript") if e["role"] == "user"]
        return [
            SpokenTurn(
                transcript=transcribed["text"],
                status=done["status"],
                answer=done["text"],
                audio=bytes(self.audio[done["response_id"]]),
                sample_rate=self.fmt.sample_rate,
                citations=done["citations"],
                latency_ms=done["latency_ms"],
            )
            for transcribed, done in zip(heard, self.received.of("response.done"), strict=False)
        ]


@contextlib.asynccontextmanager
async def raw_pcm_call(server: VoiceServer) -> AsyncIterator[RawPcmCall]:
    """A call on `WS /v1/voice/pcm`, ready to talk."""
    url = (
        server.live.base_url.replace("http://", "ws://")
        + f"/v1/voice/pcm?agent_id={server.agent_id}"
    )
    headers = {"Authorization": f"Bearer {server.live.tenant.key}"}
    async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
        call = RawPcmCall(ws)
        reader = asyncio.create_task(call.read())
        await call.received.wait_for("ready")
        try:
            yield call
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

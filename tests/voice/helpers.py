"""Talking to the voice server like a caller: synthesised speech streamed at real-time pace,
server events collected as they arrive, audio checked for being real speech."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import openai
import websockets
from websockets.asyncio.client import ClientConnection

from tests.agents_api.harness import LiveServer
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.ports.retriever import Passage
from vocalis.ports.tts import synthesize
from vocalis.voice import audio
from vocalis.voice.audio import AudioFormat

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


async def speech(espeak: EspeakTTS, text: str, fmt: AudioFormat) -> bytes:
    """`text` spoken by espeak-ng, as wire bytes in `fmt`."""
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

"""A realtime client for the tests: raw WebSocket frames and the official SDK's client."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import openai
import websockets
from websockets.asyncio.client import ClientConnection

from tests.agents_api.harness import LiveServer
from tests.voice.helpers import (
    Received,
    VoiceServer,
    read_sdk,
    silence_in,
    speech,
    stream,
    wire_format,
)
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.ports.llm import ChatDelta

TEXT_ONLY = {"type": "realtime", "output_modalities": ["text"]}
GA_DEFAULT_FORMAT = wire_format("pcm24")  # `audio/pcm` at 24 kHz both ways


async def create_agent(live: LiveServer, **fields: Any) -> str:
    """An agent on the extractive responder (fields override the defaults)."""
    body = {"name": "Support", "instructions": "Help Acme customers.", "knowledge_base_ids": []}
    async with live.client() as http:
        response = await http.post("/v1/agents", json=body | fields)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


@asynccontextmanager
async def connect(live: LiveServer, query: str) -> AsyncIterator[ClientConnection]:
    """A raw WebSocket to `/v1/realtime?<query>` with the tenant's key."""
    url = live.base_url.replace("http://", "ws://") + f"/v1/realtime?{query}"
    headers = {"Authorization": f"Bearer {live.tenant.key}"}
    async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
        yield ws


def sdk(live: LiveServer) -> openai.AsyncOpenAI:
    """The official OpenAI client pointed at the server."""
    return openai.AsyncOpenAI(api_key=live.tenant.key, base_url=f"{live.base_url}/v1")


async def recv(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    """The next server event."""
    return dict(json.loads(await asyncio.wait_for(ws.recv(), timeout=timeout)))


async def until(ws: ClientConnection, event_type: str, timeout: float = 10) -> list[dict[str, Any]]:
    """Events received up to and including the first one of `event_type`."""
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["type"] != event_type:
        seen.append(await recv(ws, timeout))
    return seen


async def send(ws: ClientConnection, event_type: str, **fields: Any) -> None:
    """Send one client event."""
    await ws.send(json.dumps({"type": event_type, **fields}))


async def update(ws: ClientConnection, session: dict[str, Any]) -> dict[str, Any]:
    """`session.update`, answered by `session.updated` (an `error` first fails)."""
    await send(ws, "session.update", session=session)
    answer = await recv(ws)
    assert answer["type"] == "session.updated", answer
    return answer


def user_text(text: str) -> dict[str, Any]:
    """A user message item."""
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def say(ws: ClientConnection, text: str) -> str:
    """Add a user message; its item id."""
    await send(ws, "conversation.item.create", item=user_text(text))
    return str((await until(ws, "conversation.item.done"))[-1]["item"]["id"])


async def answer(ws: ClientConnection, timeout: float = 30) -> list[dict[str, Any]]:
    """`response.create`, and the events up to its `response.done`."""
    await send(ws, "response.create")
    return await until(ws, "response.done", timeout)


class RecordingModel:
    """A chat model that answers `reply` and keeps what each call was given."""

    provider = "scripted"
    model = "recording"

    def __init__(self, reply: str = "Noted.") -> None:
        self.reply = reply
        self.calls: list[dict[str, Any]] = []

    async def complete(self, messages: Sequence[Any], **_: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    async def stream(self, messages: Sequence[Any], **kwargs: Any) -> AsyncIterator[ChatDelta]:
        self.calls.append({"messages": list(messages), **kwargs})
        yield ChatDelta(text=self.reply, finish_reason="stop")

    def system_prompt(self) -> str:
        """The system message of the last call."""
        return str(self.calls[-1]["messages"][0].content)


@asynccontextmanager
async def sdk_call(server: VoiceServer, agent_id: str) -> AsyncIterator[tuple[Any, Received]]:
    """The official SDK client on a voice server, its events read into `Received`."""
    received = Received()
    async with server.openai().realtime.connect(model=agent_id) as connection:
        reader = asyncio.create_task(read_sdk(connection, received))
        try:
            yield connection, received
        finally:
            reader.cancel()


async def speak(connection: Any, espeak: EspeakTTS, text: str) -> None:
    """Say `text` into the input audio buffer at twice real time, then pause."""
    fmt = GA_DEFAULT_FORMAT
    audio = await speech(espeak, text, fmt) + silence_in(fmt, 1.2)

    async def append(chunk: bytes) -> None:
        await connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())

    await stream(append, audio, fmt, speed=2.0)

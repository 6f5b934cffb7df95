"""Playing the carrier: the voice webhook signed as Twilio or Telnyx sign it, and the media
stream's carrier side — caller audio as μ-law 8 kHz `media` at real-time pace, the agent's
audio played out at real-time pace, marks echoed when the audio before them was played,
`clear` honoured (queued marks come back at once, as the carriers return them).

This is the edge fake the telephony tests say they use: the carriers' clouds cannot run
here. Signatures are computed with Twilio's own `RequestValidator` and with an Ed25519 key
pair generated for the test (standing in for Telnyx's).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection

from tests.telephony.conftest import (
    CALLER,
    TELNYX_NUMBER,
    TWILIO_CREDENTIALS,
    TWILIO_NUMBER,
    PhoneServer,
)
from tests.voice.helpers import Microphone, wire_format
from vocalis.core import audio
from vocalis.core.audio import AudioFormat

ULAW: AudioFormat = wire_format("ulaw")
FRAME = 160  # 20 ms of μ-law at 8 kHz
CALL_SID = "CA" + "7" * 32
TELNYX_CALL_ID = "v3:inbound-call-control-id"


# --- the voice webhooks ---------------------------------------------------------------------
def twilio_form(call_sid: str = CALL_SID) -> dict[str, str]:
    """What Twilio posts to a number's voice webhook for an incoming call."""
    return {
        "AccountSid": TWILIO_CREDENTIALS["account_sid"],
        "CallSid": call_sid,
        "From": CALLER,
        "To": TWILIO_NUMBER,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }


async def post_twilio_webhook(
    server: PhoneServer, form: dict[str, str], *, auth_token: str | None = None, sign: bool = True
) -> httpx.Response:
    """POST the voice webhook, signed by Twilio's validator with the number's auth token."""
    url = server.live.base_url + "/v1/telephony/twilio/voice"
    headers = {}
    if sign:
        token = auth_token or TWILIO_CREDENTIALS["auth_token"]
        headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(url, form)
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(url, data=form, headers=headers)


def stream_of_twiml(twiml: str) -> tuple[str, dict[str, str]]:
    """The `<Connect><Stream>` URL and its `<Parameter>`s."""
    root = ET.fromstring(twiml)
    stream = root.find("./Connect/Stream")
    assert stream is not None, twiml
    parameters = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
    return stream.attrib["url"], parameters


def telnyx_event(call_id: str = TELNYX_CALL_ID) -> dict[str, Any]:
    """Telnyx's `call.initiated` webhook for an incoming call."""
    return {
        "data": {
            "record_type": "event",
            "event_type": "call.initiated",
            "id": "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0",
            "occurred_at": "2026-12-03T08:00:00.000000Z",
            "payload": {
                "call_control_id": call_id,
                "connection_id": "1494404757140276705",
                "call_leg_id": "428c31b6-7af4-4bcb-b7f5-5013ef9657c1",
                "direction": "incoming",
                "from": CALLER,
                "to": TELNYX_NUMBER,
                "state": "parked",
            },
        },
        "meta": {"attempt": 1, "delivered_to": "https://example.com/webhooks"},
    }


async def post_telnyx_webhook(
    server: PhoneServer, event: dict[str, Any], *, key: Ed25519PrivateKey | None = None
) -> httpx.Response:
    """POST a Call Control webhook signed as Telnyx signs: Ed25519 over `timestamp|body`."""
    body = json.dumps(event).encode()
    timestamp = str(int(time.time()))
    signature = (key or server.telnyx_key).sign(timestamp.encode() + b"|" + body)
    headers = {
        "content-type": "application/json",
        "telnyx-timestamp": timestamp,
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
    }
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            server.live.base_url + "/v1/telephony/telnyx/voice", content=body, headers=headers
        )


# --- the media stream -----------------------------------------------------------------------
@dataclass
class CarrierStream:
    """The carrier's end of one media stream."""

    ws: ClientConnection
    provider: str
    call_id: str
    stream_id: str
    queue: list[tuple[str, Any]] = field(default_factory=list)  # ("audio", bytes) | ("mark", name)
    played: bytearray = field(default_factory=bytearray)  # played since the last echoed mark
    answers: dict[str, bytearray] = field(default_factory=dict)  # item id -> audio played
    done: list[str] = field(default_factory=list)  # replies fully played, in order
    echoed: list[str] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _sequence: int = 0
    _timestamp_ms: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # carrier → us
    def _envelope(self, event: str, **body: Any) -> dict[str, Any]:
        self._sequence += 1
        if self.provider == "twilio":
            return {
                "event": event,
                "sequenceNumber": str(self._sequence),
                "streamSid": self.stream_id,
                **body,
            }
        return {
            "event": event,
            "sequence_number": str(self._sequence),
            "stream_id": self.stream_id,
            **body,
        }

    async def begin(self, token: str) -> None:
        """`connected`, then `start` carrying the call's token as the carrier passes it."""
        if self.provider == "twilio":
            await self.ws.send(
                json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            )
            start = {
                "accountSid": TWILIO_CREDENTIALS["account_sid"],
                "streamSid": self.stream_id,
                "callSid": self.call_id,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": {"stream_token": token},
            }
        else:
            await self.ws.send(json.dumps({"event": "connected", "version": "1.0.0"}))
            start = {
                "user_id": "3e6f995f-85f7-4705-9741-53b116d28237",
                "call_control_id": self.call_id,
                "client_state": base64.b64encode(token.encode()).decode(),
                "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
            }
        await self.ws.send(json.dumps(self._envelope("start", start=start)))

    async def send_audio(self, ulaw: bytes) -> None:
        """One frame of caller audio."""
        self._timestamp_ms += len(ulaw) // 8
        media = {
            "track": "inbound",
            "chunk": str(self._sequence),
            "timestamp": str(self._timestamp_ms),
            "payload": base64.b64encode(ulaw).decode(),
        }
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.ws.send(json.dumps(self._envelope("media", media=media)))

    async def press(self, digit: str) -> None:
        """A keypad press."""
        dtmf = (
            {"track": "inbound_track", "digit": digit}
            if self.provider == "twilio"
            else {"digit": digit}
        )
        await self.ws.send(json.dumps(self._envelope("dtmf", dtmf=dtmf)))

    async def hang_up(self) -> None:
        """The caller hangs up: `stop`."""
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.ws.send(json.dumps(self._envelope("stop", stop={"callSid": self.call_id})))

    async def _echo(self, name: str) -> None:
        item = name.split(":")[0]
        self.answers.setdefault(item, bytearray()).extend(self.played)
        self.played.clear()
        self.echoed.append(name)
        if name.endswith(":done"):
            self.done.append(item)
        self._changed.set()
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.ws.send(json.dumps(self._envelope("mark", mark={"name": name})))

    # us → carrier
    async def read(self) -> None:
        """Take the agent's messages until the stream closes."""
        try:
            await self._read()
        except websockets.ConnectionClosed:
            pass  # closed by us (1008 for a refused stream): `ws.close_code` tells
        finally:
            self.closed.set()
            self._changed.set()

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            self.received.append(message)
            event = message["event"]
            if event == "media":
                self.queue.append(("audio", base64.b64decode(message["media"]["payload"])))
            elif event == "mark":
                self.queue.append(("mark", message["mark"]["name"]))
            elif event == "clear":
                self.clears.append(time.monotonic())
                marks = [value for kind, value in self.queue if kind == "mark"]
                self.queue.clear()
                for name in marks:  # returned at once, unplayed
                    await self._echo(name)

    async def play_out(self) -> None:
        """Play queued audio at real-time pace, echoing each mark when it is reached."""
        began, tick = time.monotonic(), 0
        while True:
            budget = FRAME
            while self.queue and (self.queue[0][0] == "mark" or budget > 0):
                kind, value = self.queue[0]
                if kind == "mark":
                    self.queue.pop(0)
                    await self._echo(value)
                    continue
                take = value[:budget]
                self.played += take
                budget -= len(take)
                if len(take) == len(value):
                    self.queue.pop(0)
                else:
                    self.queue[0] = ("audio", value[len(take) :])
            tick += 1
            await asyncio.sleep(max(0.0, began + tick * 0.02 - time.monotonic()))

    # waiting
    async def wait(self, condition: Any, timeout: float = 60.0, what: str = "") -> None:
        """Until `condition()` holds."""
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"no {what}; marks {self.echoed[-10:]}; sent {self._timestamp_ms} ms of "
                    f"caller audio; got {len(self.received)} messages"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))

    async def answered(self, count: int, timeout: float = 60.0) -> None:
        """Until `count` replies were played to their end."""
        await self.wait(lambda: len(self.done) >= count, timeout, f"answer #{count}")

    def answer_audio(self, item_id: str) -> bytes:
        """The PCM16 (8 kHz) the caller heard of one reply."""
        return audio.ulaw_decode(bytes(self.answers.get(item_id, b"")))


@contextlib.asynccontextmanager
async def media_stream(
    url: str, token: str, *, provider: str, call_id: str
) -> AsyncIterator[tuple[CarrierStream, Microphone]]:
    """Open the stream as the carrier, start it, and give the caller a microphone."""
    async with websockets.connect(url, max_size=None) as ws:
        stream = CarrierStream(ws, provider, call_id, stream_id=f"MZ{'5' * 32}")
        await stream.begin(token)
        tasks = [asyncio.create_task(stream.read()), asyncio.create_task(stream.play_out())]
        try:
            async with Microphone(stream.send_audio, ULAW) as microphone:
                yield stream, microphone
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


@contextlib.asynccontextmanager
async def inbound_call(
    server: PhoneServer, provider: str
) -> AsyncIterator[tuple[CarrierStream, Microphone]]:
    """An incoming call as the carrier places it: webhook, then the media stream."""
    if provider == "twilio":
        answer = await post_twilio_webhook(server, twilio_form())
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/xml")
        url, parameters = stream_of_twiml(answer.text)
        token, call_id = parameters["stream_token"], CALL_SID
    else:
        answer = await post_telnyx_webhook(server, telnyx_event())
        assert answer.status_code == 200, answer.text
        answered = await server.cloud.wait_for(f"/v2/calls/{TELNYX_CALL_ID}/actions/answer")
        url = answered.json["stream_url"]
        assert answered.json["stream_bidirectional_codec"] == "PCMU"
        token = base64.b64decode(answered.json["client_state"]).decode()
        call_id = TELNYX_CALL_ID
    assert (
        url == server.live.base_url.replace("http://", "ws://") + f"/v1/telephony/{provider}/media"
    )
    async with media_stream(url, token, provider=provider, call_id=call_id) as call:
        yield call

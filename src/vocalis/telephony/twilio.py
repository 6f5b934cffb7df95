"""Twilio: the voice webhook's signature and TwiML, the REST API, Media Streams messages.

Inbound: Twilio POSTs the voice webhook (form-encoded `CallSid`, `From`, `To`, …) signed
with the number's auth token (`X-Twilio-Signature`, checked with Twilio's own
`RequestValidator` against `VOCALIS_PUBLIC_BASE_URL` + path); we answer
`<Connect><Stream>` with the stream token as a `<Parameter>`. Twilio then opens the Media
Streams WebSocket: `connected`, `start` (stream and call sids, `customParameters`),
`media` (base64 μ-law 8 kHz), `mark`, `dtmf`, `stop`. We send `media`, `mark` and `clear`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import httpx
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, Dial, VoiceResponse

from vocalis.telephony.carrier import (
    SHARED_EVENTS,
    Message,
    StreamConnected,
    StreamMessage,
    StreamStart,
    StreamStop,
    parse_shared,
    provider_request,
)

PROVIDER = "twilio"
TOKEN_PARAMETER = "stream_token"
API_VERSION = "2010-04-01"


# --- the voice webhook ---------------------------------------------------------------------
def signature_valid(
    auth_token: str, url: str, params: Mapping[str, str], signature: str | None
) -> bool:
    """Whether `X-Twilio-Signature` signs this URL and these form parameters."""
    if not signature:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))


def stream_twiml(stream_url: str, token: str) -> str:
    """`<Response><Connect><Stream url=…><Parameter name=… value=token/>` for one call."""
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=stream_url)
    stream.parameter(name=TOKEN_PARAMETER, value=token)
    response.append(connect)
    return str(response)


def reject_twiml() -> str:
    """Refuse the call (the organisation has too many calls already)."""
    response = VoiceResponse()
    response.reject(reason="busy")
    return str(response)


def dial_twiml(destination: str) -> str:
    """`<Response><Dial>destination</Dial></Response>`: a cold transfer."""
    response = VoiceResponse()
    dial = Dial()
    dial.number(destination)
    response.append(dial)
    return str(response)


# --- Media Streams ---------------------------------------------------------------------------
class MediaStreams:
    """Twilio Media Streams messages."""

    provider = PROVIDER

    def parse(self, message: Message) -> StreamMessage | None:
        """One Twilio message (None for those we do not act on)."""
        event = message.get("event")
        if event in SHARED_EVENTS:
            return parse_shared(message)
        if event == "start":
            start = message.get("start") or {}
            parameters = start.get("customParameters") or {}
            return StreamStart(
                stream_id=str(start.get("streamSid") or message.get("streamSid") or ""),
                call_id=str(start.get("callSid") or ""),
                token=parameters.get(TOKEN_PARAMETER),
            )
        if event == "stop":
            return StreamStop()
        if event == "connected":
            return StreamConnected()
        return None

    def media(self, stream_id: str, ulaw: bytes) -> Message:
        """Agent audio for the caller."""
        payload = base64.b64encode(ulaw).decode()
        return {"event": "media", "streamSid": stream_id, "media": {"payload": payload}}

    def mark(self, stream_id: str, name: str) -> Message:
        """Echoed by Twilio once the audio before it was played."""
        return {"event": "mark", "streamSid": stream_id, "mark": {"name": name}}

    def clear(self, stream_id: str) -> Message:
        """Drop the buffered audio."""
        return {"event": "clear", "streamSid": stream_id}


# --- the REST API ----------------------------------------------------------------------------
class TwilioCalls:
    """Twilio's Calls resource for one account (`account_sid`, `auth_token`)."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, credentials: Mapping[str, Any]):
        self._http = http
        self._sid = str(credentials["account_sid"])
        self._auth = (self._sid, str(credentials["auth_token"]))
        self._base = f"{base_url.rstrip('/')}/{API_VERSION}/Accounts/{self._sid}/Calls"

    async def dial(self, *, to: str, from_: str, stream_url: str, token: str) -> str:
        """Create the call with its TwiML inline; the call's sid."""
        answer = await self._post(
            "dial",
            f"{self._base}.json",
            {"To": to, "From": from_, "Twiml": stream_twiml(stream_url, token)},
        )
        return str(answer.get("sid") or "")

    async def transfer(self, *, call_id: str, destination: str, from_: str) -> None:
        """Update the live call with `<Dial>`: Twilio leaves the stream and dials."""
        await self._post(
            "transfer", f"{self._base}/{call_id}.json", {"Twiml": dial_twiml(destination)}
        )

    async def hang_up(self, *, call_id: str) -> None:
        """Update the live call to `completed`."""
        await self._post("hang_up", f"{self._base}/{call_id}.json", {"Status": "completed"})

    async def _post(self, operation: str, url: str, form: dict[str, str]) -> Mapping[str, Any]:
        return await provider_request(
            self._http,
            provider=PROVIDER,
            operation=operation,
            method="POST",
            url=url,
            data=form,
            auth=self._auth,
        )


SERIALIZER = MediaStreams()

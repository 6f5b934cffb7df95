"""Telnyx: Call Control webhooks (Ed25519-signed), the Call Control API, media streaming.

Inbound: Telnyx POSTs `call.initiated` (JSON) to the voice webhook, signed with the
account's Ed25519 key: `telnyx-signature-ed25519` is the base64 signature of
`{telnyx-timestamp}|{raw body}`, checked against `VOCALIS_TELEPHONY_TELNYX_PUBLIC_KEY`.
We answer the call through the API (`actions/answer`) with a bidirectional RTP stream
(PCMU) to our media URL and the stream token as `client_state`. Telnyx then opens the
WebSocket: `connected`, `start` (`stream_id`, `call_control_id`, `client_state`),
`media` (base64 μ-law 8 kHz), `mark`, `dtmf`, `stop`. We send `media`, `mark`, `clear`.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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

PROVIDER = "telnyx"
SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"


# --- the voice webhook ---------------------------------------------------------------------
def signature_valid(
    public_key_b64: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    tolerance_s: int,
    now: float | None = None,
) -> bool:
    """Whether the Ed25519 signature signs `{timestamp}|{body}` and is recent enough."""
    if not (public_key_b64 and signature and timestamp):
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        key.verify(base64.b64decode(signature), timestamp.encode() + b"|" + body)
        age = (time.time() if now is None else now) - int(timestamp)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return abs(age) <= tolerance_s


def encode_state(token: str) -> str:
    """`client_state` must be base64."""
    return base64.b64encode(token.encode()).decode()


def decode_state(state: object) -> str | None:
    """The token inside a `client_state`, or None."""
    try:
        return base64.b64decode(str(state or ""), validate=True).decode() or None
    except (binascii.Error, ValueError):
        return None


def stream_options(stream_url: str, token: str) -> dict[str, str]:
    """The Call Control fields asking for a bidirectional μ-law stream to us."""
    return {
        "stream_url": stream_url,
        "stream_track": "inbound_track",
        "stream_bidirectional_mode": "rtp",
        "stream_bidirectional_codec": "PCMU",
        "client_state": encode_state(token),
    }


# --- media streaming -------------------------------------------------------------------------
class MediaStreaming:
    """Telnyx media-streaming messages."""

    provider = PROVIDER

    def parse(self, message: Message) -> StreamMessage | None:
        """One Telnyx message (None for those we do not act on)."""
        event = message.get("event")
        if event in SHARED_EVENTS:
            return parse_shared(message)
        if event == "start":
            start = message.get("start") or {}
            return StreamStart(
                stream_id=str(message.get("stream_id") or ""),
                call_id=str(start.get("call_control_id") or ""),
                token=decode_state(start.get("client_state")),
            )
        if event == "stop":
            return StreamStop()
        if event == "connected":
            return StreamConnected()
        return None

    def media(self, stream_id: str, ulaw: bytes) -> Message:
        """Agent audio (RTP payload, PCMU)."""
        return {"event": "media", "media": {"payload": base64.b64encode(ulaw).decode()}}

    def mark(self, stream_id: str, name: str) -> Message:
        """Echoed by Telnyx once the audio before it was played."""
        return {"event": "mark", "mark": {"name": name}}

    def clear(self, stream_id: str) -> Message:
        """Drop the queued audio."""
        return {"event": "clear"}


# --- the Call Control API ----------------------------------------------------------------------
class TelnyxCalls:
    """Telnyx Call Control for one account (`api_key`, `connection_id`)."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, credentials: Mapping[str, Any]):
        self._http = http
        self._headers = {"Authorization": f"Bearer {credentials['api_key']}"}
        self._connection_id = str(credentials["connection_id"])
        self._base = f"{base_url.rstrip('/')}/v2/calls"

    async def answer(self, *, call_id: str, stream_url: str, token: str) -> None:
        """Answer an incoming call, streaming its media to us."""
        await self._post(
            "answer", f"{self._base}/{call_id}/actions/answer", stream_options(stream_url, token)
        )

    async def dial(self, *, to: str, from_: str, stream_url: str, token: str) -> str:
        """Place a call that streams its media to us when answered; its call control id."""
        body = {"connection_id": self._connection_id, "to": to, "from": from_}
        answer = await self._post("dial", self._base, body | stream_options(stream_url, token))
        data = answer.get("data") or {}
        return str(data.get("call_control_id") or "")

    async def transfer(self, *, call_id: str, destination: str, from_: str) -> None:
        """Cold transfer to `destination`."""
        body = {"to": destination, "from": from_}
        await self._post("transfer", f"{self._base}/{call_id}/actions/transfer", body)

    async def hang_up(self, *, call_id: str) -> None:
        """End the call."""
        await self._post("hang_up", f"{self._base}/{call_id}/actions/hangup", {})

    async def _post(self, operation: str, url: str, body: dict[str, str]) -> Mapping[str, Any]:
        return await provider_request(
            self._http,
            provider=PROVIDER,
            operation=operation,
            method="POST",
            url=url,
            json=body,
            headers=self._headers,
        )


SERIALIZER = MediaStreaming()

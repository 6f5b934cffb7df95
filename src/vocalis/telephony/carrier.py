"""What every carrier module provides: its media-stream messages and its call control.

A carrier module (`twilio`, `telnyx`) turns the carrier's stream messages into the
`StreamMessage`s below and back (`StreamSerializer`), and drives calls through the
carrier's REST API (`CallControl`). `PhoneCall` works on these alone.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import structlog

from vocalis.core.metrics import TELEPHONY_PROVIDER_REQUESTS
from vocalis.core.tracing import tracer
from vocalis.telephony.errors import ProviderFailed

log = structlog.get_logger(__name__)

Message = dict[str, Any]


# --- stream messages, carrier-neutral ---------------------------------------------------------
@dataclass(frozen=True)
class StreamConnected:
    """The carrier opened the stream (nothing to act on yet)."""


@dataclass(frozen=True)
class StreamStart:
    """The stream of one call began: its ids and the token we gave the carrier."""

    stream_id: str
    call_id: str
    token: str | None


@dataclass(frozen=True)
class StreamMedia:
    """Caller audio: G.711 μ-law at 8 kHz; `timestamp_ms` from the stream's start."""

    ulaw: bytes
    timestamp_ms: float | None

    @classmethod
    def from_payload(cls, payload: object, timestamp: object) -> StreamMedia:
        """A carrier's base64 `payload` and `timestamp` (bad values: no audio, no time)."""
        try:
            ulaw = base64.b64decode(str(payload or ""), validate=True)
        except (binascii.Error, ValueError):
            ulaw = b""
        try:
            timestamp_ms: float | None = float(str(timestamp))
        except ValueError:
            timestamp_ms = None
        return cls(ulaw, timestamp_ms)


@dataclass(frozen=True)
class StreamMark:
    """The audio before the mark `name` has been played to the caller (or was cleared)."""

    name: str


@dataclass(frozen=True)
class StreamDtmf:
    """The caller pressed a key."""

    digit: str


@dataclass(frozen=True)
class StreamStop:
    """The stream ended (the caller hung up, or the call left the stream)."""


StreamMessage = StreamConnected | StreamStart | StreamMedia | StreamMark | StreamDtmf | StreamStop


class StreamSerializer(Protocol):
    """A carrier's media-stream wire format."""

    provider: str

    def parse(self, message: Message) -> StreamMessage | None:
        """One carrier message (None for those we do not act on)."""

    def media(self, stream_id: str, ulaw: bytes) -> Message:
        """Agent audio (μ-law 8 kHz) to play."""

    def mark(self, stream_id: str, name: str) -> Message:
        """A mark the carrier echoes once the audio before it was played."""

    def clear(self, stream_id: str) -> Message:
        """Drop the audio not yet played (barge-in)."""


class CallControl(Protocol):
    """A carrier's call-control REST API, for one number's account."""

    async def dial(self, *, to: str, from_: str, stream_url: str, token: str) -> str:
        """Place an outbound call that opens a media stream when answered; its call id."""

    async def transfer(self, *, call_id: str, destination: str, from_: str) -> None:
        """Send the call to `destination` (cold transfer); the stream ends."""

    async def hang_up(self, *, call_id: str) -> None:
        """End the call."""


# --- REST requests ----------------------------------------------------------------------------
async def provider_request(
    http: httpx.AsyncClient,
    *,
    provider: str,
    operation: str,
    method: str,
    url: str,
    **kwargs: Any,
) -> Mapping[str, Any]:
    """One call-control request through the SSRF-guarded client; its JSON answer.

    Counted by provider, operation and outcome; ProviderFailed when it fails.
    """
    started = time.perf_counter()
    with tracer().start_as_current_span(f"telephony.{operation}") as span:
        span.set_attribute("vocalis.telephony.provider", provider)
        try:
            response = await http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            TELEPHONY_PROVIDER_REQUESTS.labels(provider, operation, "error").inc()
            log.warning("telephony_request_failed", provider=provider, operation=operation)
            raise ProviderFailed(f"{provider} did not answer: {type(exc).__name__}.") from None
        span.set_attribute("http.response.status_code", response.status_code)
    outcome = "ok" if response.is_success else str(response.status_code)
    TELEPHONY_PROVIDER_REQUESTS.labels(provider, operation, outcome).inc()
    log.info(
        "telephony_request",
        provider=provider,
        operation=operation,
        status=response.status_code,
        ms=round((time.perf_counter() - started) * 1000.0, 1),
    )
    if not response.is_success:
        raise ProviderFailed(f"{provider} answered {response.status_code} to {operation}.")
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


SHARED_EVENTS = frozenset({"media", "mark", "dtmf"})


def parse_shared(message: Message) -> StreamMessage | None:
    """The messages Twilio and Telnyx send alike: caller media (other tracks are ignored),
    marks played, keypad digits."""
    event = message.get("event")
    if event == "media":
        media = message.get("media") or {}
        if media.get("track", "inbound") not in ("inbound", "inbound_track"):
            return None
        return StreamMedia.from_payload(media.get("payload"), media.get("timestamp"))
    if event == "mark":
        return StreamMark(str((message.get("mark") or {}).get("name", "")))
    if event == "dtmf":
        return StreamDtmf(str((message.get("dtmf") or {}).get("digit", "")))
    return None

"""The carriers Vocalis speaks to, by provider name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vocalis.core.backends import Backends
from vocalis.telephony import telnyx, twilio
from vocalis.telephony.carrier import CallControl, StreamSerializer

SERIALIZERS: dict[str, StreamSerializer] = {
    twilio.PROVIDER: twilio.SERIALIZER,
    telnyx.PROVIDER: telnyx.SERIALIZER,
}


async def call_control(
    backends: Backends, provider: str, credentials: Mapping[str, Any]
) -> CallControl:
    """The provider's REST API for one account, through the SSRF-guarded client."""
    http = await backends.webhook_http.get()  # the SSRF-guarded, allow-listed client
    settings = backends.settings
    if provider == telnyx.PROVIDER:
        return telnyx.TelnyxCalls(http, settings.telephony_telnyx_api_base_url, credentials)
    return twilio.TwilioCalls(http, settings.telephony_twilio_api_base_url, credentials)


def media_url(backends: Backends, provider: str, fallback_base: str) -> str:
    """The public WebSocket URL of a provider's media stream (`http→ws`, `https→wss`)."""
    base = (backends.settings.public_base_url or fallback_base).rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    elif base.startswith("http://"):
        base = "ws://" + base.removeprefix("http://")
    return f"{base}/v1/telephony/{provider}/media"

"""Carrier REST requests go through the SSRF guard: only allow-listed private hosts are
reached (the carriers' clouds are stood in for by a local server, the edge of the process)."""

from __future__ import annotations

import base64

import pytest

from tests.telephony.conftest import TELNYX_CREDENTIALS, TWILIO_CREDENTIALS, CarrierCloud
from vocalis.core.ssrf import OutboundUrlForbidden, guarded_client
from vocalis.telephony.errors import ProviderFailed
from vocalis.telephony.telnyx import TelnyxCalls
from vocalis.telephony.twilio import TwilioCalls


async def test_a_carrier_api_on_a_private_address_is_refused_unless_allow_listed(
    carrier_cloud: CarrierCloud,
) -> None:
    async with guarded_client([]) as http:
        calls = TwilioCalls(http, carrier_cloud.base_url, TWILIO_CREDENTIALS)
        with pytest.raises(OutboundUrlForbidden):
            await calls.hang_up(call_id="CA1")
    assert carrier_cloud.requests == []
    async with guarded_client(["127.0.0.1"]) as http:
        await TwilioCalls(http, carrier_cloud.base_url, TWILIO_CREDENTIALS).hang_up(call_id="CA1")
    request = carrier_cloud.requests[0]
    sid, token = TWILIO_CREDENTIALS["account_sid"], TWILIO_CREDENTIALS["auth_token"]
    assert request.path == f"/2010-04-01/Accounts/{sid}/Calls/CA1.json"
    assert request.form == {"Status": "completed"}
    expected = "Basic " + base64.b64encode(f"{sid}:{token}".encode()).decode()
    assert request.headers["authorization"] == expected


async def test_a_carrier_that_does_not_answer_is_a_provider_failure() -> None:
    async with guarded_client(["127.0.0.1"]) as http:
        calls = TelnyxCalls(http, "http://127.0.0.1:9", TELNYX_CREDENTIALS)  # nothing listens
        with pytest.raises(ProviderFailed):
            await calls.transfer(call_id="v3:x", destination="+15550100999", from_="+15550100002")

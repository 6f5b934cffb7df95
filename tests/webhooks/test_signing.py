"""Signatures follow Standard Webhooks: the reference library accepts ours."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from vocalis.webhooks.signing import generate_secret, sign, signature_headers


def test_secrets_are_whsec_and_base64_of_32_random_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[len("whsec_") :])) == 32
    assert generate_secret() != secret


def test_the_reference_library_verifies_our_signature() -> None:
    secret = generate_secret()
    body = b'{"type":"webhook.test","data":{}}'
    headers = signature_headers(secret, "evt_123", int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == {"type": "webhook.test", "data": {}}


def test_a_changed_body_fails_verification() -> None:
    secret = generate_secret()
    headers = signature_headers(secret, "evt_123", int(time.time()), b'{"a":1}')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', headers)


def test_another_secret_fails_verification() -> None:
    headers = signature_headers(generate_secret(), "evt_1", int(time.time()), b"{}")
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(b"{}", headers)


def test_the_signature_is_v1_base64_hmac_sha256_of_id_timestamp_and_body() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    value = sign(secret, "msg_1", 1700000000, b"{}")
    import hashlib
    import hmac

    expected = hmac.new(b"k" * 32, b"msg_1.1700000000.{}", hashlib.sha256).digest()
    assert value == "v1," + base64.b64encode(expected).decode()

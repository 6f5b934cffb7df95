"""Error codes of phone numbers, carrier webhooks and calls."""

from __future__ import annotations

from vocalis.core.errors import VocalisError, register

TELEPHONY_SIGNATURE_INVALID = register(
    "telephony_signature_invalid",
    403,
    "Carrier signature invalid",
    "A carrier webhook came without a valid signature (`X-Twilio-Signature`, "
    "`telnyx-signature-ed25519`) for the number it names; nothing was started.",
)
TELEPHONY_NUMBER_TAKEN = register(
    "telephony_number_taken",
    409,
    "Phone number already registered",
    "`POST /v1/phone-numbers` with a number that is already registered.",
)
TELEPHONY_CALL_LIMIT = register(
    "telephony_call_limit",
    429,
    "Too many calls",
    "The organisation already has `VOCALIS_TELEPHONY_MAX_CONCURRENT_CALLS_PER_ORG` calls.",
    retryable=True,
)
TELEPHONY_PROVIDER_FAILED = register(
    "telephony_provider_failed",
    502,
    "Carrier request failed",
    "The carrier's REST API refused or did not answer a call-control request.",
    retryable=True,
)
TELEPHONY_STREAM_TOKEN_INVALID = register(
    "telephony_stream_token_invalid",
    401,
    "Stream token invalid",
    "A media stream started without a valid, unexpired, unused call token.",
)


class SignatureInvalid(VocalisError):
    """The carrier webhook's signature does not check out."""

    code = TELEPHONY_SIGNATURE_INVALID


class NumberTaken(VocalisError):
    code = TELEPHONY_NUMBER_TAKEN


class CallLimitReached(VocalisError):
    code = TELEPHONY_CALL_LIMIT


class ProviderFailed(VocalisError):
    code = TELEPHONY_PROVIDER_FAILED


class StreamTokenInvalid(VocalisError):
    code = TELEPHONY_STREAM_TOKEN_INVALID

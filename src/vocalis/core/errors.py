"""One exception hierarchy and one catalogue of stable error codes.

Every error a client can see has an entry in `CATALOGUE`; the documentation's error-code
table is generated from it. Raise a subclass of `VocalisError` (or `VocalisError` with a
catalogued code); the app turns it into RFC 9457 `application/problem+json`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


@dataclass(frozen=True)
class ErrorCode:
    """A catalogued error: stable code, HTTP status, short title and when it happens."""

    code: str
    status: int
    title: str
    when: str
    retryable: bool = False


CATALOGUE: dict[str, ErrorCode] = {}


def register(code: str, status: int, title: str, when: str, *, retryable: bool = False) -> str:
    """Add a code to the catalogue (once) and return it."""
    if code in CATALOGUE:
        raise ValueError(f"error code {code!r} registered twice")
    CATALOGUE[code] = ErrorCode(code, status, title, when, retryable)
    return code


# --- request shape ----------------------------------------------------------------------
VALIDATION_FAILED = register(
    "validation_failed",
    422,
    "Request validation failed",
    "The body, query or path parameters do not match the documented schema.",
)
MALFORMED_JSON = register(
    "malformed_json", 400, "Malformed JSON", "The request body is not valid JSON."
)
UNSUPPORTED_MEDIA_TYPE = register(
    "unsupported_media_type",
    415,
    "Unsupported media type",
    "The Content-Type is not one this endpoint accepts.",
)
PAYLOAD_TOO_LARGE = register(
    "payload_too_large",
    413,
    "Payload too large",
    "The request body exceeds the configured size limit.",
)
ROUTE_NOT_FOUND = register(
    "route_not_found", 404, "No such route", "No endpoint exists at this path."
)
METHOD_NOT_ALLOWED = register(
    "method_not_allowed",
    405,
    "Method not allowed",
    "The path exists but does not accept this HTTP method.",
)
INVALID_CURSOR = register(
    "invalid_cursor", 400, "Invalid cursor", "A pagination cursor could not be decoded."
)
BAD_REQUEST = register(
    "bad_request", 400, "Bad request", "The request is well-formed but cannot be processed."
)

# --- auth -------------------------------------------------------------------------------
AUTH_MISSING = register(
    "auth_missing",
    401,
    "Authentication required",
    "No `Authorization: Bearer <api key>` header was sent.",
)
AUTH_INVALID = register(
    "auth_invalid",
    401,
    "Invalid credentials",
    "The API key or token is unknown, malformed, revoked or expired.",
)
FORBIDDEN_SCOPE = register(
    "forbidden_scope",
    403,
    "Insufficient scope",
    "The API key is valid but lacks the scope this endpoint requires.",
)
FORBIDDEN_ROLE = register(
    "forbidden_role",
    403,
    "Role too low",
    "A key may create, revoke or change only keys whose role is not above its own (an "
    "admin key cannot revoke an owner's key).",
)
RATE_LIMITED = register(
    "rate_limited",
    429,
    "Too many requests",
    "The API key exceeded its request budget; retry after `Retry-After` seconds.",
    retryable=True,
)

# --- resources --------------------------------------------------------------------------
NOT_FOUND = register(
    "not_found",
    404,
    "Resource not found",
    "The resource does not exist or belongs to another organisation.",
)
CONFLICT = register(
    "conflict", 409, "Conflict", "The request conflicts with the current state of a resource."
)

# --- server -----------------------------------------------------------------------------
INTERNAL_ERROR = register(
    "internal_error",
    500,
    "Internal server error",
    "An unexpected error; details are logged server-side under the request id.",
)
BACKEND_UNAVAILABLE = register(
    "backend_unavailable",
    503,
    "Backend unavailable",
    "A backing service (database, Redis, object store…) did not answer.",
    retryable=True,
)


# --- realtime WebSocket (`error` events; the status is the HTTP analogue) ------------------
REALTIME_INVALID_JSON = register(
    "invalid_json", 400, "Invalid JSON frame", "A realtime text frame is not valid JSON."
)
REALTIME_INVALID_EVENT = register(
    "invalid_event",
    400,
    "Invalid event",
    "A realtime frame is not a JSON object with a string `type`.",
)
REALTIME_UNKNOWN_EVENT = register(
    "unknown_event",
    400,
    "Unknown event type",
    "A realtime client event's `type` is not one the server implements.",
)
REALTIME_INVALID_VALUE = register(
    "invalid_value",
    400,
    "Invalid event field",
    "A realtime client event does not match its schema; `param` names the field.",
)
REALTIME_UNSUPPORTED_SESSION_FIELD = register(
    "unsupported_session_field",
    400,
    "Unknown session field",
    "`session.update` named a field that is not part of the GA session; the other fields "
    "were applied.",
)
REALTIME_UNSUPPORTED_FRAME = register(
    "unsupported_frame",
    400,
    "Binary frame not expected",
    "A binary frame arrived before the session declared `audio.input.format`.",
)
REALTIME_NO_INPUT = register(
    "no_input",
    400,
    "Nothing to answer",
    "`response.create` came with no new user input or function call output to answer.",
)
REALTIME_RESPONSE_ACTIVE = register(
    "conversation_already_has_active_response",
    409,
    "A response is in progress",
    "`response.create` came while a response is running; cancel it or wait for `response.done`.",
)
REALTIME_CANCEL_NOT_ACTIVE = register(
    "response_cancel_not_active",
    400,
    "No response to cancel",
    "`response.cancel` came with no response in progress (or named another response).",
)
REALTIME_RESPONSES_UNAVAILABLE = register(
    "responses_unavailable",
    400,
    "Transcription session",
    "`response.create` in a `transcription` session, which turns speech into text only.",
)
# OpenAI's own codes for an unknown item id (peers such as Pipecat recognise them).
REALTIME_RETRIEVE_UNKNOWN_ITEM = register(
    "item_retrieve_invalid_item_id",
    404,
    "No such item to retrieve",
    "`conversation.item.retrieve` named an item the conversation does not hold.",
)
REALTIME_DELETE_UNKNOWN_ITEM = register(
    "item_delete_invalid_item_id",
    404,
    "No such item to delete",
    "`conversation.item.delete` named an item the conversation does not hold.",
)
REALTIME_TRUNCATE_UNKNOWN_ITEM = register(
    "item_truncate_invalid_item_id",
    404,
    "No such item to truncate",
    "`conversation.item.truncate` named an item the conversation does not hold.",
)
REALTIME_ITEM_NOT_DELETABLE = register(
    "item_not_deletable",
    409,
    "Item cannot be deleted",
    "Only input not yet answered and the agent's last reply can be deleted.",
)
REALTIME_ITEM_NOT_TRUNCATABLE = register(
    "item_not_truncatable",
    400,
    "Item cannot be truncated",
    "Only a spoken assistant reply can be truncated (content index 0).",
)
REALTIME_AUDIO_FRAME_TOO_LARGE = register(
    "audio_frame_too_large",
    413,
    "Audio frame too large",
    "One append or binary frame carries more audio than `VOCALIS_VOICE_MAX_FRAME_BYTES`.",
)
REALTIME_BUFFER_FULL = register(
    "input_audio_buffer_full",
    413,
    "Input audio buffer full",
    "With manual turns, the buffered audio reached its limit; commit the turn.",
)
REALTIME_COMMIT_UNAVAILABLE = register(
    "input_audio_buffer_commit_unavailable",
    400,
    "Commit not available",
    "`input_audio_buffer.commit` while server turn detection commits turns itself.",
)
REALTIME_COMMIT_EMPTY = register(
    "input_audio_buffer_commit_empty",
    400,
    "Nothing to commit",
    "`input_audio_buffer.commit` with less than 100 ms of buffered audio.",
)


class VocalisError(Exception):
    """Root of every error Vocalis raises on purpose."""

    code: str = INTERNAL_ERROR

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        if self.code not in CATALOGUE:
            raise ValueError(f"uncatalogued error code {self.code!r}")
        self.detail = detail or CATALOGUE[self.code].title
        self.extra = extra or {}
        self.headers = headers or {}
        super().__init__(self.detail)

    @property
    def entry(self) -> ErrorCode:
        """The catalogue entry of this error."""
        return CATALOGUE[self.code]

    @property
    def status(self) -> int:
        """The HTTP status of this error."""
        return self.entry.status


class RequestError(VocalisError):
    """The client sent something we cannot accept."""

    code = BAD_REQUEST


class ValidationFailed(RequestError):
    code = VALIDATION_FAILED


def validation_failed(exc: ValidationError, *, loc: Sequence[str] = ("body",)) -> ValidationFailed:
    """A Pydantic `ValidationError` from validation done by a handler (a merged update, a
    patched session) as the same 422 problem, with field errors, as the framework's own."""
    problems = [
        {
            "loc": [*loc, *(str(p) for p in err.get("loc", ()))],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    first = problems[0] if problems else {"loc": list(loc), "msg": "invalid value"}
    return ValidationFailed(f"{'.'.join(first['loc'])}: {first['msg']}", extra={"errors": problems})


class PayloadTooLarge(RequestError):
    code = PAYLOAD_TOO_LARGE


class UnsupportedMediaType(RequestError):
    code = UNSUPPORTED_MEDIA_TYPE


class AuthError(VocalisError):
    """The caller is not who they claim to be."""

    code = AUTH_INVALID


class PermissionDenied(VocalisError):
    code = FORBIDDEN_SCOPE


class RateLimited(VocalisError):
    code = RATE_LIMITED


class NotFound(VocalisError):
    code = NOT_FOUND


class Conflict(VocalisError):
    code = CONFLICT


class BackendUnavailable(VocalisError):
    """A backing service failed; transient by nature."""

    code = BACKEND_UNAVAILABLE

"""One exception hierarchy and one catalogue of stable error codes.

Every error a client can see has an entry in `CATALOGUE`; the documentation's error-code
table is generated from it. Raise a subclass of `VocalisError` (or `VocalisError` with a
catalogued code); the app turns it into RFC 9457 `application/problem+json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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

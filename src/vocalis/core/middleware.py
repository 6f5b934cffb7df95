"""The outermost ASGI layer: request ids, log context, metrics, body limits, last-resort 500s.

Written as plain ASGI (not BaseHTTPMiddleware) so streaming responses and WebSockets pass
through untouched and cheaply.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import structlog
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vocalis.core import errors, jsonguard
from vocalis.core.logging import OwnText, RequestLog
from vocalis.core.metrics import HTTP_IN_FLIGHT, HTTP_LATENCY, HTTP_REQUESTS
from vocalis.core.problems import PROBLEM_MEDIA_TYPE, problem_body, problem_response
from vocalis.core.tracing import current_trace_id

log = structlog.get_logger("vocalis.http")
access = RequestLog("vocalis.http")  # the line of every request (one step when it can)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}
_ACCEPTED_TYPES = ("application/json", "multipart/form-data")
# Endpoints that legitimately take other bodies declare their path prefixes here.
RAW_BODY_PATHS: tuple[str, ...] = ("/v1/telephony/",)  # carrier webhooks (Twilio: a form)
# The upload routes (method and path template, exactly as routed) get the larger upload
# limit; their endpoints enforce their own, smaller, limits while streaming. Every other
# request, whatever its path contains, gets the JSON body limit.
UPLOAD_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/v1/knowledge-bases/{kb_id}/documents"),
    ("POST", "/v1/audio/transcriptions"),
    ("POST", "/v1/audio/translations"),
)


def _route_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^/{}]+\})", template)
    return re.compile(
        "^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$"
    )


_UPLOAD_PATTERNS = tuple((method, _route_pattern(path)) for method, path in UPLOAD_ROUTES)


def is_upload_route(method: str, path: str) -> bool:
    """Whether a request goes to one of `UPLOAD_ROUTES` (the route, not a path substring)."""
    return any(method == m and pattern.match(path) for m, pattern in _UPLOAD_PATTERNS)


def _nul_in_url(scope: Scope) -> bool:
    query = scope.get("query_string", b"")
    return "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query


class _BodyTooLarge(Exception):
    pass


async def _refuse_handshake(scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
    """A 422 problem for a WebSocket handshake (close code 1008 without the extension)."""
    await receive()  # websocket.connect
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008, "reason": "NUL in the URL"})
        return
    body = problem_body(
        errors.VALIDATION_FAILED,
        detail="NUL characters are not allowed in the URL.",
        request_id=request_id,
        instance=None,
    )
    await send(
        {
            "type": "websocket.http.response.start",
            "status": body["status"],
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": json.dumps(body).encode()})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "<unmatched>"


def _is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class RequestContextMiddleware:
    """Request id, log context, HTTP metrics, body-size and content-type checks."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        if incoming and _REQUEST_ID.match(incoming):
            request_id, logged = incoming, incoming  # the client's: redacted like any value
        else:
            request_id = os.urandom(16).hex()  # 32 hex digits, as uuid4().hex, ~4x cheaper
            logged = OwnText(request_id)  # made up here: nothing to redact in it
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=logged)
        if scope["type"] == "websocket":
            if _nul_in_url(scope):  # ids with NUL would reach the database: refuse the handshake
                await _refuse_handshake(scope, receive, send, request_id)
                return
            await self.app(scope, receive, send)
            return
        await self._http(scope, receive, send, request_id)

    async def _http(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        method = scope["method"]
        started = time.perf_counter()
        status = 500
        response_started = False

        too_large = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if too_large and not response_started:
                # The framework turned our overflow into its own error; answer 413 instead.
                response_started = True
                status = 413
                problem = self._problem(
                    scope, errors.PAYLOAD_TOO_LARGE, f"Body exceeds {limit} bytes."
                )
                await problem(scope, receive, send_wrapper_raw)
                return
            if too_large:
                return
            await send_wrapper_raw(message)

        async def send_wrapper_raw(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                extra = scope.get("state", {}).get("rate_limit_headers")
                if extra:  # the limiter's, unless the response set its own
                    present = {name for name, _ in headers}
                    for key, value in extra.items():
                        name = key.lower().encode()
                        if name not in present:
                            headers.append((name, value.encode()))
                message["headers"] = headers
            await send(message)

        limit = self._limit_for(scope)
        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise _BodyTooLarge()
            return message

        HTTP_IN_FLIGHT.inc()
        try:
            early = self._precheck(scope, method, limit)
            app_receive: Receive = receive_wrapper
            if early is None and self._checks_json(scope, method):
                # The whole body (at most `limit` bytes) is read here, checked for nesting
                # and NUL, and handed on as it came.
                messages = await self._read_body(receive_wrapper)
                body = b"".join(m.get("body", b"") for m in messages)
                try:
                    jsonguard.check_raw(body)
                except jsonguard.JsonRejected as exc:
                    early = self._problem(
                        scope,
                        errors.VALIDATION_FAILED,
                        exc.message,
                        field_errors=[
                            {"loc": ["body", *exc.loc], "msg": exc.message, "type": "value_error"}
                        ],
                    )
                else:
                    app_receive = self._replay(messages, receive)
            if early is not None:
                await early(scope, receive, send_wrapper)
            else:
                await self.app(scope, app_receive, send_wrapper)
        except _BodyTooLarge:
            if not response_started:
                await self._problem(
                    scope, errors.PAYLOAD_TOO_LARGE, f"Body exceeds {limit} bytes."
                )(scope, receive, send_wrapper)
        except Exception as exc:
            # The database not answering (or failing a commit) is a retryable 503; anything
            # else is a 500. Either way nothing of the request is reported as done.
            down = isinstance(exc, OperationalError | InterfaceError)
            log.exception(
                "backend_unavailable" if down else "unhandled_error",
                method=method,
                path=scope.get("path"),
            )
            if not response_started:
                code = errors.BACKEND_UNAVAILABLE if down else errors.INTERNAL_ERROR
                await self._problem(scope, code, None)(scope, receive, send_wrapper)
        finally:
            HTTP_IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route, str(status)).observe(elapsed)
            access.info(
                "http_request",
                method=method,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                trace_id=current_trace_id(),
            )

    def _limit_for(self, scope: Scope) -> int:
        if is_upload_route(scope["method"], scope.get("path", "")):
            return self.max_upload_bytes
        return self.max_body_bytes

    @staticmethod
    def _checks_json(scope: Scope, method: str) -> bool:
        if method not in _BODY_METHODS or is_upload_route(method, scope.get("path", "")):
            return False
        return _is_json_type(_header(scope, b"content-type") or "")

    @staticmethod
    async def _read_body(receive: Receive) -> list[Message]:
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                return messages

    @staticmethod
    def _replay(messages: list[Message], receive: Receive) -> Receive:
        pending = list(messages)

        async def replay() -> Message:
            return pending.pop(0) if pending else await receive()

        return replay

    def _precheck(self, scope: Scope, method: str, limit: int) -> Any:
        if _nul_in_url(scope):
            return self._problem(
                scope, errors.VALIDATION_FAILED, "NUL characters are not allowed in the URL."
            )
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.isdigit():
                return self._problem(scope, errors.BAD_REQUEST, "Invalid Content-Length.")
            if int(length) > limit:
                return self._problem(
                    scope, errors.PAYLOAD_TOO_LARGE, f"Body exceeds {limit} bytes."
                )
        if method in _BODY_METHODS and (length not in (None, "0")):
            content_type = _header(scope, b"content-type") or ""
            path = scope.get("path", "")
            if not path.startswith(RAW_BODY_PATHS or ("\0",)) and not (
                _is_json_type(content_type)
                or content_type.lower().startswith("multipart/form-data")
            ):
                return self._problem(
                    scope,
                    errors.UNSUPPORTED_MEDIA_TYPE,
                    f"Send the body as one of: {', '.join(_ACCEPTED_TYPES)}.",
                )
        return None

    @staticmethod
    def _problem(
        scope: Scope,
        code: str,
        detail: str | None,
        *,
        field_errors: list[dict[str, Any]] | None = None,
    ) -> ASGIApp:
        extra = {"errors": field_errors} if field_errors else None

        async def app(scope_: Scope, receive: Receive, send: Send) -> None:
            response = problem_response(Request(scope_), code, detail, extra=extra)
            await response(scope_, receive, send)

        return app

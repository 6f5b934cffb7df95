"""The server span of every HTTP request and WebSocket session: `<method> <route>`.

A lean pure-ASGI replacement for `FastAPIInstrumentor.instrument_app` that writes the same
span: same name, kind, parent (the W3C `traceparent` of the request, honoured), the same
attributes (the instrumentation's default, "old" HTTP semantic conventions: `http.method`,
`http.route`, `http.status_code`, `http.url`, `http.target`, `net.peer.ip`…), 5xx marked
as errors, `/healthz` and `/metrics` excluded. What it leaves out is what cost time and
produced nothing here: matching the route a second time to name the span before the app
runs (the router's own match names it, from `scope["route"]`, once routing has happened),
the generic header getters decoding every header once per header looked up, the
instrumentation's own OpenTelemetry metrics (no meter provider is installed: they went
nowhere), and two extra exception-handling layers.

Where a configuration asks for something only the instrumentation writes (the new or
duplicated HTTP semantic conventions through `OTEL_SEMCONV_STABILITY_OPT_IN`, captured
request or response headers through `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_*`),
`install_server_spans` installs the instrumentation instead, as before.
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from typing import Any, cast

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.telemetry import TelemetryConfig
from opentelemetry import context, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.instrumentation._semconv import (
    _get_schema_url,
    _OpenTelemetrySemanticConventionStability,
    _OpenTelemetryStabilitySignalType,
    _StabilityMode,
)
from opentelemetry.instrumentation.asgi import asgi_getter, asgi_setter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.fastapi.version import __version__ as _INSTRUMENTATION_VERSION
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.instrumentation.utils import (
    http_status_to_status_code,
    is_http_instrumentation_enabled,
)
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.http import (
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE,
    detect_synthetic_user_agent,
    parse_excluded_urls,
    redact_url,
    sanitize_method,
)
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vocalis.core.tracing import spans_recorded

# Requests not traced (a regular expression searched in `scheme://host/path`, as the
# instrumentation's `excluded_urls`): probes and scrapes, counted by the metrics instead.
EXCLUDED_URLS = "healthz,metrics"
# The instrumentation scope the spans are reported under: unchanged, so that anything
# selecting server spans by scope keeps working.
_SCOPE = "opentelemetry.instrumentation.fastapi"
_SCHEMA_URL = _get_schema_url(_StabilityMode.DEFAULT)


# FastAPI's own (native) telemetry stays off: it would make a second server span with other
# attribute names once the instrumentation's middleware is not in the stack (it steps aside
# only for that middleware), and without a meter or logger provider its metrics and logs go
# nowhere. Off, FastAPI does not even look at each request.
NATIVE_TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def install_server_spans(app: FastAPI, *, excluded_urls: str = EXCLUDED_URLS) -> None:
    """One server span per request and WebSocket session, outermost in the app's stack (so
    CORS preflights and the middleware's early answers are traced too)."""
    if not lean_spans_possible():
        FastAPIInstrumentor.instrument_app(
            app, excluded_urls=excluded_urls, exclude_spans=["receive", "send"]
        )
        return
    build = app.build_middleware_stack

    def build_with_span() -> ASGIApp:
        stack = build()
        if isinstance(stack, ServerErrorMiddleware):
            # An exception is on the span before the error handler answers 500 (which ends
            # the span), as the instrumentation's own layer there did.
            stack.app = _RecordException(stack.app)
        return ServerSpanMiddleware(stack, excluded_urls=excluded_urls)

    app.build_middleware_stack = build_with_span  # type: ignore[method-assign]


def lean_spans_possible() -> bool:
    """Whether `ServerSpanMiddleware` writes what the instrumentation would: the default
    semantic conventions, no captured headers."""
    _OpenTelemetrySemanticConventionStability._initialize()
    mode = _OpenTelemetrySemanticConventionStability._get_opentelemetry_stability_opt_in_mode(
        _OpenTelemetryStabilitySignalType.HTTP
    )
    captured = any(
        os.environ.get(name, "").strip()
        for name in (
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST,
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE,
        )
    )
    return bool(mode == _StabilityMode.DEFAULT and not captured)


def _decode(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except ValueError:  # as the instrumentation's getter does
        return value.decode("unicode_escape")


def _host_port(server: Any) -> tuple[str, Any]:
    server = server or ["0.0.0.0", 80]
    port = server[1]
    return server[0] + (":" + str(port) if str(port) != "80" else ""), port


def _scan(scope: Scope) -> tuple[str, list[str], str | None, bool]:
    """One pass over the request's headers: the URL the exclusion list is searched in, the
    `Host` values, the first `User-Agent`, and whether any header a propagator reads is
    there."""
    hosts: list[str] = []
    agent: str | None = None
    propagated = False
    for key, value in scope.get("headers") or ():
        name = key.lower()
        if name == b"host":
            hosts.append(_decode(value))
        elif name == b"user-agent":
            if agent is None:
                agent = _decode(value)
        elif name in _PROPAGATED:
            propagated = True
    host = hosts[0] if hosts else _host_port(scope.get("server"))[0]
    url = scope.get("scheme", "http") + "://" + host + scope.get("path", "")
    return url, hosts, agent, propagated


def request_attributes(scope: Scope) -> tuple[str, dict[str, Any], bool]:
    """The span's start attributes (`collect_request_attributes` of the ASGI
    instrumentation, default conventions), the URL the exclusion list is searched in, and
    whether the request carries any header a propagator reads."""
    url, hosts, agent, propagated = _scan(scope)
    return url, _attributes(scope, url, hosts, agent), propagated


def _attributes(scope: Scope, url: str, hosts: list[str], agent: str | None) -> dict[str, Any]:
    server_host, port = _host_port(scope.get("server"))
    path = scope.get("path", "")
    attributes: dict[str, Any] = {}
    scheme = scope.get("scheme")
    if scheme:
        attributes["http.scheme"] = scheme
    if server_host:
        attributes["http.host"] = server_host
    if port:
        with contextlib.suppress(ValueError, TypeError):
            attributes["net.host.port"] = int(port)
    flavor = scope.get("http_version")
    if flavor:
        attributes["http.flavor"] = flavor
    if path:
        attributes["http.target"] = path
    full = url
    query = scope.get("query_string")
    if query:
        full += "?" + urllib.parse.unquote(
            query.decode("utf8") if isinstance(query, bytes) else query
        )
    # Credentials and signed query parameters are redacted; without `@` or `?` there is
    # nothing `redact_url` could change.
    full = redact_url(full) if ("@" in full or "?" in full) else full
    if full:
        attributes["http.url"] = full
    method = scope.get("method", "")
    if method:
        normalized = sanitize_method(method).strip()
        if normalized:
            attributes["http.method"] = normalized
    if hosts:
        attributes["http.server_name"] = ",".join(hosts)
    if agent:
        attributes["http.user_agent"] = agent
        synthetic = detect_synthetic_user_agent(agent)
        if synthetic:
            attributes["user_agent.synthetic.type"] = synthetic
    client = scope.get("client")
    if client is not None:
        if client[0]:
            attributes["net.peer.ip"] = client[0]
        if client[1]:
            with contextlib.suppress(ValueError, TypeError):
                attributes["net.peer.port"] = int(client[1])
    return attributes


# The header names the default propagators (W3C trace context and baggage) read; with none
# of them in a request, extraction can only give an empty context.
_PROPAGATED = frozenset({b"traceparent", b"tracestate", b"baggage"})
_DEFAULT_PROPAGATORS = (TraceContextTextMapPropagator, W3CBaggagePropagator)


def _default_propagation(textmap: TextMapPropagator) -> bool:
    inner = (
        getattr(textmap, "_propagators", None)
        if isinstance(textmap, CompositePropagator)
        else [textmap]
    )
    return bool(inner) and all(isinstance(p, _DEFAULT_PROPAGATORS) for p in inner or ())


def matched_route(scope: Scope) -> str | None:
    """The route template a request went to: the router's own match (`scope["route"]`), or,
    for a request answered before routing (a CORS preflight, a body refused by the
    middleware, a 404), the instrumentation's way: the first full match, else the last
    partial one."""
    route = scope.get("route")
    if route is not None:
        path = getattr(route, "path", None)
        return str(path) if path is not None else scope.get("path")
    app = scope.get("app")
    if app is None:
        return None
    found: str | None = None
    for candidate in iter_route_contexts(getattr(app, "routes", [])):
        match, _ = (
            Route.matches(candidate, scope)
            if isinstance(candidate, Route)
            else candidate.matches(scope)
        )
        if match == Match.FULL:
            found = getattr(candidate, "path", scope.get("path"))
            break
        if match == Match.PARTIAL:
            found = candidate.path
    return found


def span_name(scope: Scope, route: str | None) -> str:
    """`<METHOD> <route>`; `HTTP <route>` for a WebSocket or an unknown method."""
    method = sanitize_method(scope.get("method", "").strip())
    if method == "_OTHER":
        method = "HTTP"
    if method and route:
        return f"{method} {route}"
    return route or method


class ServerSpanMiddleware:
    """The request's server span, current while the app runs; named and given
    `http.route` from the route the router matched, `http.status_code` from the response."""

    def __init__(self, app: ASGIApp, *, excluded_urls: str = EXCLUDED_URLS) -> None:
        self.app = app
        self.excluded = parse_excluded_urls(excluded_urls)
        self.tracer = trace.get_tracer(_SCOPE, _INSTRUMENTATION_VERSION, schema_url=_SCHEMA_URL)
        self._textmap: TextMapPropagator | None = None
        self._default_textmap = False

    def _parent(self, scope: Scope, propagated: bool) -> context.Context:
        textmap = propagate.get_global_textmap()
        if textmap is not self._textmap:
            self._textmap = textmap
            self._default_textmap = _default_propagation(textmap)
        if not propagated and self._default_textmap:
            return context.Context()  # what extracting nothing gives
        return propagate.extract(cast(dict[str, Any], scope), getter=asgi_getter)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or not is_http_instrumentation_enabled():
            await self.app(scope, receive, send)
            return
        url, hosts, agent, propagated = _scan(scope)
        if self.excluded.url_disabled(url):
            await self.app(scope, receive, send)
            return
        # A span nothing will receive (`otel_exporter=none`, no processor, no sampled
        # trace from upstream: `tracing.RecordWhenReceived`) is not recorded and its
        # attributes would be dropped unread: they are not built (issue 11).
        attributes = (
            _attributes(scope, url, hosts, agent) if propagated or spans_recorded() else None
        )
        if trace.get_current_span() is trace.INVALID_SPAN:
            parent = self._parent(scope, propagated)
            span_kind = SpanKind.SERVER
        else:  # inside a span already (an in-process call): a child, as the instrumentation
            parent = context.get_current()
            span_kind = SpanKind.INTERNAL
        span = self.tracer.start_span(
            span_name(scope, None), context=parent, kind=span_kind, attributes=attributes
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        named = False
        trailers = False
        status_set = False

        def name_span() -> None:
            nonlocal named
            named = True
            if span.is_recording():
                route = matched_route(scope)
                if route:
                    span.set_attribute("http.route", route)
                span.update_name(span_name(scope, route))

        async def send_with_span(message: Message) -> None:
            nonlocal trailers, status_set
            kind_ = message["type"]
            if kind_ == "http.response.start":
                trailers = message.get("trailers", False)
                _set_status(span, message["status"])
                name_span()
                propagator = get_global_response_propagator()
                if propagator:
                    propagator.inject(
                        message,
                        context=trace.set_span_in_context(span, context.Context()),
                        setter=asgi_setter,
                    )
            elif kind_ == "websocket.send" and not status_set:
                status_set = True
                _set_status(span, 200)
            await send(message)
            if (
                not trailers and kind_ == "http.response.body" and not message.get("more_body")
            ) or (
                trailers and kind_ == "http.response.trailers" and not message.get("more_trailers")
            ):
                span.end()

        try:
            await self.app(scope, receive, send_with_span)
        except Exception as exc:
            _record(span, exc)
            raise
        finally:
            if not named:
                name_span()
            context.detach(token)
            if span.is_recording():
                span.end()


class _RecordException:
    """Records an exception escaping the app on the current (server) span."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            _record(trace.get_current_span(), exc)
            raise


def _record(span: trace.Span, exc: Exception) -> None:
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def _set_status(span: trace.Span, status: Any) -> None:
    """`http.status_code`; a 5xx (or a status that is not a number) makes the span an error."""
    if not span.is_recording():
        return
    try:
        code = int(status)
    except ValueError:
        span.set_status(Status(StatusCode.ERROR, "Non-integer HTTP status: " + str(status)))
        return
    span.set_attribute("http.status_code", code)
    if http_status_to_status_code(code, server_span=True) is StatusCode.ERROR:
        span.set_status(Status(StatusCode.ERROR))


__all__: list[str] = [
    "EXCLUDED_URLS",
    "NATIVE_TELEMETRY_OFF",
    "ServerSpanMiddleware",
    "install_server_spans",
    "lean_spans_possible",
    "matched_route",
    "request_attributes",
    "span_name",
]

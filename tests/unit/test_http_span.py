"""The lean server span (`core/http_span.py`) writes what `FastAPIInstrumentor` wrote.

The same requests go through two copies of one small app, one with the instrumentation as
the app used to install it and one with `install_server_spans`; every span's name, kind,
parent, status and attributes must be equal: routes with and without parameters, a query
string with a signed parameter, an incoming `traceparent`, 404, 405, 5xx, an exception, an
answer given before routing (a middleware's 413, a CORS preflight), a WebSocket session,
`tag_request_span`, and the excluded `/healthz` and `/metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.fixtures.spans import collect_spans
from vocalis.core.http_span import (
    NATIVE_TELEMETRY_OFF,
    ServerSpanMiddleware,
    install_server_spans,
    lean_spans_possible,
)
from vocalis.core.tracing import tag_request_span

_exporter = InMemorySpanExporter()
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    with collect_spans(_exporter):
        yield _exporter


class _EarlyAnswer:
    """Answers a request with `x-early` with a 413 before routing (as the request middleware
    answers a body over its limit)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (b"x-early", b"1") in scope["headers"]:
            await JSONResponse({"detail": "too large"}, status_code=413)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _app(instrument: Callable[[FastAPI], None]) -> FastAPI:
    app = FastAPI(telemetry=NATIVE_TELEMETRY_OFF)
    router = APIRouter(prefix="/v1")

    @router.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @router.post("/items")
    async def create() -> dict[str, str]:
        return {"id": "new"}

    @router.get("/tagged")
    async def tagged() -> dict[str, str]:
        tag_request_span(org_id="org_1", conversation_id="conv_1")
        return {}

    @router.get("/failing")
    async def failing() -> JSONResponse:
        return JSONResponse({"detail": "down"}, status_code=503)

    @router.get("/raising")
    async def raising() -> None:
        raise RuntimeError("boom")

    @router.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {}

    @app.get("/metrics")
    async def metrics() -> dict[str, str]:
        return {}

    app.include_router(router)
    instrument(app)
    app.add_middleware(_EarlyAnswer)
    app.add_middleware(CORSMiddleware, allow_origins=["https://a.example"], allow_methods=["*"])
    return app


def _instrumentation(app: FastAPI) -> None:
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="healthz,metrics", exclude_spans=["receive", "send"]
    )


def _seen(span: ReadableSpan) -> dict[str, Any]:
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind,
        "status": (span.status.status_code, span.status.description),
        "attributes": dict(span.attributes or {}),
        "remote_parent": (format(parent.trace_id, "032x"), parent.span_id)
        if parent is not None and parent.is_remote
        else None,
        "events": sorted({event.name for event in span.events}),
        "scope": span.instrumentation_scope.name if span.instrumentation_scope else None,
    }


REQUESTS: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/v1/items/1", {}),
    ("GET", "/v1/items/1?sig=s3cret&page=2", {}),
    ("GET", "/v1/items/1", {"traceparent": TRACEPARENT, "user-agent": "curl/8.5"}),
    ("GET", "/v1/items/1", {"user-agent": "Googlebot/2.1", "host": "api.example:8080"}),
    ("DELETE", "/v1/items/1", {}),
    ("GET", "/v1/nowhere", {}),
    ("POST", "/v1/items", {"x-early": "1"}),
    ("PURGE", "/v1/items/1", {}),
    (
        "OPTIONS",
        "/v1/items/1",
        {"origin": "https://a.example", "access-control-request-method": "GET"},
    ),
    ("GET", "/v1/failing", {}),
    ("GET", "/v1/raising", {}),
    ("GET", "/v1/tagged", {}),
    ("GET", "/healthz", {}),
    ("GET", "/metrics", {}),
]


def _run(app: FastAPI, exporter: InMemorySpanExporter) -> list[list[dict[str, Any]]]:
    seen = []
    with TestClient(app, raise_server_exceptions=False) as client:
        for method, url, headers in REQUESTS:
            exporter.clear()
            client.request(method, url, headers=headers)
            seen.append([_seen(s) for s in exporter.get_finished_spans()])
        exporter.clear()
        with client.websocket_connect("/v1/ws") as websocket:
            websocket.send_text("hello")
            assert websocket.receive_text() == "hello"
        seen.append([_seen(s) for s in exporter.get_finished_spans()])
    return seen


def test_the_lean_span_is_the_instrumentations_span(spans: InMemorySpanExporter) -> None:
    assert lean_spans_possible()
    before = _run(_app(_instrumentation), spans)
    after = _run(_app(install_server_spans), spans)
    for (method, url, _), old, new in zip(
        [*REQUESTS, ("WS", "/v1/ws", {})], before, after, strict=True
    ):
        assert new == old, (method, url)
    by_url = {f"{m} {u}": s for (m, u, _), s in zip(REQUESTS, after, strict=False)}
    # What the tests and dashboards rely on, spelled out.
    [item] = by_url["GET /v1/items/1?sig=s3cret&page=2"]
    assert item["name"] == "GET /v1/items/{item_id}"
    assert item["attributes"]["http.route"] == "/v1/items/{item_id}"
    assert item["attributes"]["http.status_code"] == 200
    assert "s3cret" not in item["attributes"]["http.url"]
    [traced] = after[2]
    assert traced["remote_parent"] is not None and traced["remote_parent"][0] == TRACE_ID
    [tagged] = by_url["GET /v1/tagged"]
    assert tagged["attributes"]["vocalis.org_id"] == "org_1"
    assert by_url["GET /v1/failing"][0]["status"][0] == trace.StatusCode.ERROR
    [raised] = by_url["GET /v1/raising"]
    assert raised["events"] == ["exception"] and raised["status"][0] == trace.StatusCode.ERROR
    [early] = by_url["POST /v1/items"]
    assert early["name"] == "POST /v1/items" and early["attributes"]["http.status_code"] == 413
    assert by_url["GET /healthz"] == [] and by_url["GET /metrics"] == []
    [session] = after[-1]
    assert session["name"] == "HTTP /v1/ws" and session["attributes"]["http.scheme"] == "ws"


def test_configurations_only_the_instrumentation_serves_keep_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", "x-custom")
    assert not lean_spans_possible()
    app = FastAPI(telemetry=NATIVE_TELEMETRY_OFF)
    install_server_spans(app)
    assert getattr(app, "_is_instrumented_by_opentelemetry", False)
    monkeypatch.delenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST")
    lean = FastAPI(telemetry=NATIVE_TELEMETRY_OFF)
    install_server_spans(lean)
    assert isinstance(lean.build_middleware_stack(), ServerSpanMiddleware)

"""Database, Redis and HTTP-client spans: an API request on PostgreSQL and Redis makes child
spans for its SQL statements and Redis commands inside the request's trace; an outgoing
request of the product's guarded clients (httpx for webhooks, carriers and tools; httpx2
under the openai and mcp SDKs) is a child span of whatever runs it; commands and
statements outside any trace (the broker's polling) make no span."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.api.conftest import Api, make_settings, start_api
from tests.fixtures.spans import collect_spans
from vocalis.core.ssrf import guarded_client, guarded_client2
from vocalis.core.tracing import instrument_clients, tracer

_exporter = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    with collect_spans(_exporter):
        instrument_clients()
        yield _exporter


@pytest.fixture
async def pg_api(tmp_path: Path, pg_url: str, redis_url: str) -> AsyncIterator[Api]:
    async for running in start_api(make_settings(tmp_path, pg_url, redis_url)):
        yield running


def _system(span: ReadableSpan) -> str | None:
    attributes = span.attributes or {}
    value = attributes.get("db.system.name", attributes.get("db.system"))
    return str(value) if value is not None else None


async def test_a_request_makes_database_and_redis_child_spans(
    pg_api: Api, spans: InMemorySpanExporter
) -> None:
    tenant = await pg_api.tenant()
    spans.clear()
    response = await pg_api.client.get("/v1/agents", headers=tenant.headers)
    assert response.status_code == 200
    finished = spans.get_finished_spans()
    (server,) = [s for s in finished if s.kind == SpanKind.SERVER and "/v1/agents" in s.name]
    trace_id = server.context.trace_id
    in_request = [s for s in finished if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in in_request}

    def under_request(span: ReadableSpan) -> bool:
        parent = span.parent
        while parent is not None:
            if parent.span_id == server.context.span_id:
                return True
            parent = by_id[parent.span_id].parent if parent.span_id in by_id else None
        return False

    database = [s for s in in_request if _system(s) == "postgresql"]
    commands = [s for s in in_request if _system(s) == "redis"]
    assert database, [s.name for s in in_request]
    assert commands, [s.name for s in in_request]
    for span in database + commands:
        assert span.kind == SpanKind.CLIENT and under_request(span), span.name
    statements = [
        str((s.attributes or {}).get("db.statement", (s.attributes or {}).get("db.query.text", "")))
        for s in database
    ]
    assert any(text.lstrip().upper().startswith("SELECT") for text in statements), statements
    assert not any(tenant.key in text for text in statements)  # placeholders, never values


async def test_commands_outside_any_trace_make_no_span(
    redis_url: str, spans: InMemorySpanExporter
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        spans.clear()
        await client.ping()  # what the broker's polling looks like: no request around it
        assert [s for s in spans.get_finished_spans() if _system(s) == "redis"] == []
        identity = {"vocalis.org_id": "org_1", "vocalis.conversation_id": "conv_1"}
        with tracer().start_as_current_span("voice.turn", attributes=identity):
            await client.ping()
        (ping,) = [s for s in spans.get_finished_spans() if _system(s) == "redis"]
        assert ping.parent is not None
        # inside a turn, a client span carries the conversation's identity like every span
        assert identity.items() <= dict(ping.attributes or {}).items()
    finally:
        await client.aclose()


@pytest.fixture
def receiver() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("make_client", [guarded_client, guarded_client2])
async def test_outgoing_requests_of_the_guarded_clients_are_child_spans(
    receiver: str, spans: InMemorySpanExporter, make_client: object
) -> None:
    spans.clear()
    async with make_client(["127.0.0.0/8"]) as client:  # type: ignore[operator]
        with tracer().start_as_current_span("webhook.deliver") as parent:
            response = await client.get(receiver)
    assert response.status_code == 204
    (span,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    attributes = span.attributes or {}
    status = attributes.get("http.response.status_code", attributes.get("http.status_code"))
    assert status == 204 and span.name in ("GET", "HTTP GET")

"""The span and metric references are what a run really emits.

Representative runs with an in-memory span exporter on the global tracer provider and the
Prometheus registry read before and after: on the live server (real HTTP, real Redis,
SQLite) REST calls, a chat turn over REST and a realtime text turn over the WebSocket; and
a webhook delivery attempt (the `deliver_webhook` task's body) to a real receiver. Then:

- every span the run emits is named in `docs/reference/spans.md` (`SPAN_NAMES`);
- every span with declared required attributes (`SPAN_ATTRIBUTES`) is emitted, and every
  emitted instance has each of those attributes;
- every metric family whose samples the run changed is in `docs/reference/metrics.md`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from tests.agents_api.harness import LiveServer, live_server
from tests.api.conftest import Api
from tests.fixtures.spans import collect_spans
from tests.realtime.client import answer, connect, create_agent, recv, say, update
from tests.webhooks.harness import fast_settings, start_app
from tests.webhooks.receiver import running_receiver
from vocalis.core.tracing import SPAN_ATTRIBUTES, SPAN_NAMES, instrument_clients
from vocalis.events.outbox import record_event
from vocalis.webhooks import dispatch
from vocalis.webhooks.delivery import attempt_delivery

__all__ = ["live_server"]
# Which run proves which span's required attributes (together: every one of them).
WORKER_RUN = {"webhook.deliver"}
API_RUN = set(SPAN_ATTRIBUTES) - WORKER_RUN

METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "reference" / "metrics.md"
_exporter = InMemorySpanExporter()
# Families of prometheus_client's own process/platform collectors: not the product's.
_RUNTIME_FAMILIES = ("process_", "python_")


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    with collect_spans(_exporter):
        instrument_clients()
        yield _exporter


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        "^"
        + re.sub(r"<[^>]+>", ".+", re.escape(name).replace(r"\<", "<").replace(r"\>", ">"))
        + "$"
    )


_OWN = {name: _pattern(name) for name in SPAN_NAMES if not name.startswith("<")}


def documented_name(span: ReadableSpan) -> str | None:
    """The `SPAN_NAMES` entry a finished span is an instance of (None: undocumented)."""
    attributes = span.attributes or {}
    system = attributes.get("db.system", attributes.get("db.system.name"))
    if span.kind == SpanKind.SERVER:
        return "<method> <route>"
    if system == "redis":
        return "<Redis command>"
    if system is not None:
        return "<SQL verb> <database>"
    if span.kind == SpanKind.CLIENT and "http.method" in attributes:
        return "<HTTP method>"
    matches = [name for name, pattern in _OWN.items() if pattern.match(span.name)]
    # The most specific entry wins (`voice.turn.speculation` over `voice.turn`).
    return max(matches, key=len) if matches else None


def _classify(finished: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    by_name: dict[str, list[ReadableSpan]] = {}
    undocumented = []
    for span in finished:
        name = documented_name(span)
        if name is None:
            undocumented.append(span.name)
        else:
            by_name.setdefault(name, []).append(span)
    assert not undocumented, f"spans emitted but not in docs/reference/spans.md: {undocumented}"
    return by_name


def _check_required(by_name: dict[str, list[ReadableSpan]], names: set[str]) -> None:
    for name in sorted(names):
        assert name in SPAN_NAMES, name
        emitted = by_name.get(name)
        assert emitted, f"{name!r} is documented with required attributes but was not emitted"
        for span in emitted:
            attributes = span.attributes or {}
            # A WebSocket session's server span has no request method of its own (the ASGI
            # instrumentation sets `http.method` on it only sometimes): documented so.
            websocket = attributes.get("http.scheme") in ("ws", "wss")
            missing = [
                a
                for a in SPAN_ATTRIBUTES[name]
                if a not in attributes and not (websocket and a == "http.method")
            ]
            assert not missing, (span.name, missing, dict(span.attributes or {}))


def _samples() -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    families: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for family in REGISTRY.collect():
        if family.name.startswith(_RUNTIME_FAMILIES):
            continue
        families[family.name] = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples
        }
    return families


def _documented_metrics() -> set[str]:
    names = set(re.findall(r"^\| `([a-z0-9_]+)` \|", METRICS_DOC.read_text(), re.MULTILINE))
    # A counter is documented as `<family>_total`.
    return names | {n.removesuffix("_total") for n in names}


async def test_a_run_emits_the_documented_spans_and_metrics(
    live_server: LiveServer, spans: InMemorySpanExporter
) -> None:
    before = _samples()
    spans.clear()
    agent_id = await create_agent(live_server)
    async with live_server.client() as http:
        assert (await http.get("/v1/agents")).status_code == 200
        created = await http.post(f"/v1/agents/{agent_id}/conversations", json={})
        assert created.status_code == 201, created.text
        turn = await http.post(
            f"/v1/conversations/{created.json()['id']}/messages", json={"content": "Hello"}
        )
        assert turn.status_code == 200, turn.text
    async with connect(live_server, f"model={agent_id}") as ws:
        assert (await recv(ws))["type"] == "session.created"
        await update(
            ws, {"output_modalities": ["text"], "audio": {"input": {"turn_detection": None}}}
        )
        await say(ws, "Hello")
        assert (await answer(ws))[-1]["response"]["status"] == "completed"
    by_name = _classify(spans.get_finished_spans())

    _check_required(by_name, API_RUN)
    # The realtime turn's spans are inside its conversation too.
    runs = by_name["agent.run"]
    assert len({s.attributes["vocalis.conversation_id"] for s in runs if s.attributes}) == 2

    after = _samples()
    touched = {name for name, samples in after.items() if samples != before.get(name) and samples}
    assert "vocalis_http_requests" in touched
    _check_documented_metrics(touched)


def _check_documented_metrics(touched: set[str]) -> None:
    assert touched, "the run changed no metric"
    undocumented_metrics = sorted(touched - _documented_metrics())
    assert not undocumented_metrics, (
        f"metrics the run touched that docs/reference/metrics.md does not list: "
        f"{undocumented_metrics}"
    )


@pytest.fixture
async def webhook_api(tmp_path: Path, redis_url: str) -> AsyncIterator[Api]:
    url = f"sqlite+aiosqlite:///{tmp_path}/webhooks.db"
    async for api in start_app(fast_settings(tmp_path / "data", url, redis_url)):
        yield api


async def test_a_webhook_delivery_emits_the_documented_spans_and_metrics(
    webhook_api: Api, spans: InMemorySpanExporter
) -> None:
    tenant = await webhook_api.tenant()
    with running_receiver() as receiver:
        created = await webhook_api.client.post(
            "/v1/webhooks", json={"url": receiver.url + "/hook"}, headers=tenant.headers
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()
        receiver.secret("/hook", endpoint["secret"])
        async with webhook_api.backends.database.session() as session:
            event = await record_event(
                session=session,
                org_id=tenant.org_id,
                type="webhook.test",
                data={"endpoint_id": endpoint["id"]},
                endpoint_id=endpoint["id"],
            )
        [delivery_id] = await dispatch.dispatch_event(webhook_api.backends, event.id)
        before = _samples()
        spans.clear()
        await attempt_delivery(webhook_api.backends, delivery_id, "task-observability")
        assert receiver.requests("/hook")
    by_name = _classify(spans.get_finished_spans())
    _check_required(by_name, WORKER_RUN)
    [deliver] = by_name["webhook.deliver"]
    assert deliver.attributes and deliver.attributes["vocalis.org_id"] == tenant.org_id
    # The request to the receiver is a child of the delivery span.
    posts = by_name["<HTTP method>"]
    assert any(p.parent and p.parent.span_id == deliver.context.span_id for p in posts)
    after = _samples()
    _check_documented_metrics(
        {name for name, samples in after.items() if samples != before.get(name) and samples}
    )


def test_every_declared_span_is_checked_by_a_run() -> None:
    assert set(SPAN_ATTRIBUTES) == API_RUN | WORKER_RUN


def test_a_span_outside_the_reference_is_caught(spans: InMemorySpanExporter) -> None:
    """The classification above can fail: an unknown span name is undocumented."""
    spans.clear()
    with trace.get_tracer("test").start_as_current_span("made.up.span"):
        pass
    (span,) = spans.get_finished_spans()
    assert documented_name(span) is None

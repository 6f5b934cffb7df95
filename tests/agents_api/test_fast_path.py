"""The fast paths of issue 11 skip nothing: a one-off chat completion and a conversation
message are still authenticated, rate-limited, logged, traced and counted, and a one-off
completion stores what the general path stores (conversation, messages, events in order),
also when the client goes away before reading it."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from tests.agents_api.harness import AgentApi, start_agent_api
from tests.api.conftest import make_settings
from vocalis.core.logging import configure_logging

COMPLETIONS = "/v1/chat/completions"
MESSAGES = "/v1/conversations/{conversation_id}/messages"
_exporter = InMemorySpanExporter()


@pytest.fixture(scope="module")
def _span_exporter() -> InMemorySpanExporter:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_exporter))
    return _exporter


@pytest.fixture
def spans(_span_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    _span_exporter.clear()
    yield _span_exporter
    _span_exporter.clear()


@pytest.fixture
async def limited_api(tmp_path: Path, redis_url: str) -> AsyncIterator[AgentApi]:
    """The agent API with a small bucket: 4 requests at once per key."""
    url = f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
    settings = make_settings(tmp_path, url, redis_url, rate_limit_burst=4, rate_limit_per_minute=1)
    async for running in start_agent_api(settings):
        yield running


@pytest.fixture
def log_lines(limited_api: AgentApi) -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging(limited_api.settings, stream=buffer)
    yield buffer
    configure_logging(limited_api.settings)


def _requests(route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "vocalis_http_requests_total", {"method": "POST", "route": route, "status": status}
    )
    return value or 0.0


def _request_lines(buffer: io.StringIO, route: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    return [x for x in lines if x.get("event") == "http_request" and x.get("route") == route]


async def test_fast_paths_are_authenticated_limited_logged_traced_and_counted(
    limited_api: AgentApi, log_lines: io.StringIO, spans: InMemorySpanExporter
) -> None:
    api = limited_api
    acme = await api.tenant("Acme")
    agent = await api.agent(acme)  # request 1 of the bucket of 4
    conversation = await api.conversation(acme, agent["id"])  # 2
    body = {"model": agent["id"], "messages": [{"role": "user", "content": "Hi!"}]}
    path = MESSAGES.format(conversation_id=conversation["id"])
    before = (_requests(COMPLETIONS, "200"), _requests(MESSAGES, "200"))

    # Authenticated: no key, a wrong key → 401, on both.
    assert (await api.client.post(COMPLETIONS, json=body)).status_code == 401
    wrong = {"Authorization": "Bearer vk_wrong_wrongwrongwrongwrongwrongwrong"}
    assert (await api.client.post(path, json={"content": "Hi"}, headers=wrong)).status_code == 401

    # Rate-limited: the bucket's headers on each answer, then 429 (the key is cached by now).
    completed = await api.client.post(COMPLETIONS, json=body, headers=acme.headers)  # 3
    said = await api.client.post(path, json={"content": "Hi"}, headers=acme.headers)  # 4
    assert completed.status_code == said.status_code == 200
    assert completed.headers["RateLimit-Remaining"] == "1"
    assert said.headers["RateLimit-Remaining"] == "0"
    refused = await api.client.post(COMPLETIONS, json=body, headers=acme.headers)
    assert refused.status_code == 429 and "Retry-After" in refused.headers

    # Counted.
    assert _requests(COMPLETIONS, "200") == before[0] + 1
    assert _requests(MESSAGES, "200") == before[1] + 1
    assert _requests(COMPLETIONS, "429") >= 1
    # Logged: one line per request, with the organisation and the conversation.
    completion_lines = _request_lines(log_lines, COMPLETIONS)
    assert [x["status"] for x in completion_lines] == [401, 200, 429]
    one_off_id = completed.json()["vocalis"]["conversation_id"]
    assert completion_lines[1]["conversation_id"] == one_off_id
    assert completion_lines[1]["org_id"] == acme.org_id
    assert [x["status"] for x in _request_lines(log_lines, MESSAGES)] == [401, 200]
    # Traced: a server span per request, and the agent's turn beneath the successful ones.
    names = [s.name for s in spans.get_finished_spans()]
    assert names.count(f"POST {COMPLETIONS}") == 3
    assert names.count(f"POST {MESSAGES}") == 2
    assert names.count("agent.run") == 2


async def test_a_one_off_completion_stores_what_the_general_path_stores(
    sqlite_agent_api: AgentApi,
) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    agent = await api.agent(acme)
    messages = [
        {"role": "user", "content": "What is your name?"},
        {"role": "assistant", "content": "I am the Acme assistant."},
        {"role": "user", "content": "Hello!"},
    ]
    response = await api.client.post(
        COMPLETIONS,
        json={"model": agent["id"], "messages": messages, "metadata": {"ticket": "42"}},
        headers=acme.headers,
    )
    body = response.json()
    conversation_id = body["vocalis"]["conversation_id"]
    read = await api.client.get(f"/v1/conversations/{conversation_id}", headers=acme.headers)
    stored = read.json()
    assert stored["status"] == "ended" and stored["ended_reason"] == "completed"
    assert stored["ephemeral"] is True
    assert stored["metadata"] == {"source": "chat.completions", "ticket": "42"}
    assert [(m["role"], m["content"]) for m in stored["messages"]] == [
        ("user", "Hello!"),
        ("assistant", body["choices"][0]["message"]["content"]),
    ]
    assert stored["messages"][1]["id"] == body["vocalis"]["message_id"]
    assert stored["message_count"] == 2
    assert stored["usage"]["completion_tokens"] == body["usage"]["completion_tokens"]
    mine = [(n, p) for n, p in api.events.events if p.get("conversation_id") == conversation_id]
    assert [n for n, _ in mine] == ["conversation.started", "conversation.ended"]
    assert mine[1][1]["reason"] == "completed" and mine[1][1]["message_count"] == 2
    # Nothing of the in-memory turn is left behind in the checkpointer.
    snapshot = await api.runtime.graph.aget_state({"configurable": {"thread_id": conversation_id}})
    assert not snapshot.values


async def test_a_one_off_completion_whose_stream_is_abandoned_is_still_stored(
    sqlite_agent_api: AgentApi,
) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    agent = await api.agent(acme)
    body = {
        "model": agent["id"],
        "messages": [{"role": "user", "content": "Hello there!"}],
        "stream": True,
    }
    async with api.client.stream("POST", COMPLETIONS, json=body, headers=acme.headers) as stream:
        async for _ in stream.aiter_lines():
            break  # the client reads the first chunk and goes away
    [started] = [
        p
        for n, p in api.events.events
        if n == "conversation.started" and p["metadata"].get("source") == "chat.completions"
    ]
    conversation_id = started["conversation_id"]
    read = await api.client.get(f"/v1/conversations/{conversation_id}", headers=acme.headers)
    stored = read.json()
    assert stored["status"] == "ended"
    assert stored["messages"][0]["content"] == "Hello there!"
    assert api.events.named("conversation.ended")[-1]["conversation_id"] == conversation_id

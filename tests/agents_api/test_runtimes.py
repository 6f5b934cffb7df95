"""The runtime port: the same conversation paths over each runtime (`"runtime"`), on the
embedded extractive responder (deterministic); llama.cpp runs are in
tests/integration/test_agent_runtimes.py."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.agents_api.harness import REFUND_PASSAGES, AgentApi, sse_events
from vocalis.agents.tools.client import ClientTool
from vocalis.conversations import service
from vocalis.core.errors import VocalisError

_exporter = InMemorySpanExporter()
_installed: list[bool] = []


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans finished during the test (an in-memory exporter on the global provider)."""
    if not _installed:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        _installed.append(True)
    _exporter.clear()
    yield _exporter
    _exporter.clear()


@pytest.mark.parametrize("runtime", ["langgraph", "openai_agents", "crewai"])
async def test_each_runtime_answers_streams_cites_and_remembers(
    sqlite_agent_api: AgentApi, runtime: str, spans: InMemorySpanExporter
) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    api.retriever.add(acme.org_id, "kb_policies", REFUND_PASSAGES)
    agent = await api.agent(acme, runtime=runtime, knowledge_base_ids=["kb_policies"])
    assert agent["runtime"] == runtime
    conversation = await api.conversation(acme, agent["id"])

    reply = (await api.say(acme, conversation["id"], "How many days do I have for refunds?")).json()
    assert "30 days" in reply["content"]
    assert reply["citations"][0]["document_name"] == "refund-policy.md"
    assert reply["usage"]["provider"] == "extractive"
    assert reply["usage"]["total_tokens"] > 0
    names = {s.name for s in spans.get_finished_spans()}
    assert {"agent.run", "llm.chat"} <= names  # the same spans whatever the runtime
    sdk_spans = {n for n in names if n.startswith("openai_agents.")}
    # The SDK's own tracing is bridged into OpenTelemetry (and only on its runtime).
    assert bool(sdk_spans) == (runtime == "openai_agents")

    streamed = await api.client.post(
        f"/v1/conversations/{conversation['id']}/messages",
        json={"content": "Thanks!", "stream": True},
        headers=acme.headers,
    )
    events = sse_events(streamed.text)
    names = [name for name, _ in events]
    assert names[0] == "message.delta" and names[-1] == "message.completed"
    deltas = "".join(json.loads(data)["delta"] for name, data in events if name == "message.delta")
    completed = json.loads(events[-1][1])
    assert deltas.strip() == completed["content"].strip()

    # The memory is one transcript whatever the runtime: the checkpoint holds both turns.
    history = await api.runtime.graph.aget_state(
        {"configurable": {"thread_id": conversation["id"]}}
    )
    contents = [m["content"] for m in history.values["messages"] if m["role"] == "user"]
    assert contents == ["How many days do I have for refunds?", "Thanks!"]


async def test_handoffs_reach_only_the_organisations_agents(sqlite_agent_api: AgentApi) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    billing = await api.agent(acme, name="Billing")
    front = await api.agent(acme, runtime="openai_agents", handoffs=[billing["id"]])
    assert front["handoffs"] == [billing["id"]]
    globex = await api.tenant("Globex")
    foreign = await api.client.post(
        "/v1/agents",
        json={"name": "x", "runtime": "openai_agents", "handoffs": [billing["id"]]},
        headers=globex.headers,
    )
    assert foreign.status_code == 422
    assert foreign.json()["code"] == "agent_handoff_not_found"
    wrong_runtime = await api.client.post(
        "/v1/agents", json={"name": "x", "handoffs": [billing["id"]]}, headers=acme.headers
    )
    assert wrong_runtime.status_code == 422  # handoffs need the Agents SDK runtime


async def test_a_crew_of_role_agents_is_configured_and_answers(sqlite_agent_api: AgentApi) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    api.retriever.add(acme.org_id, "kb_policies", REFUND_PASSAGES)
    crew = {
        "process": "sequential",
        "members": [
            {"role": "Researcher", "goal": "Find the policy.", "tools": ["search_knowledge"]},
            {"role": "Writer", "goal": "Write the reply.", "backstory": "A careful writer."},
        ],
    }
    agent = await api.agent(
        acme,
        runtime="crewai",
        crew=crew,
        tools=[{"type": "search_knowledge"}],
        knowledge_base_ids=["kb_policies"],
    )
    assert agent["crew"]["members"][1]["role"] == "Writer"
    assert agent["crew"]["members"][1]["tools"] is None  # every tool of the agent
    conversation = await api.conversation(acme, agent["id"])
    reply = (await api.say(acme, conversation["id"], "How many days do I have for refunds?")).json()
    assert "30 days" in reply["content"]
    assert reply["citations"][0]["document_name"] == "refund-policy.md"

    hierarchical = await api.client.patch(
        f"/v1/agents/{agent['id']}",
        json={"crew": {**crew, "process": "hierarchical"}},
        headers=acme.headers,
    )
    assert hierarchical.status_code == 200, hierarchical.text
    reply = (await api.say(acme, conversation["id"], "How many days do I have for refunds?")).json()
    assert "30 days" in reply["content"]

    for body in (
        {"name": "x", "crew": crew},  # a crew needs the crewai runtime
        {"name": "x", "runtime": "crewai", "crew": crew},  # search_knowledge is not a tool
        {"name": "x", "runtime": "crewai", "crew": {"process": "round_robin"}},
    ):
        refused = await api.client.post("/v1/agents", json=body, headers=acme.headers)
        assert refused.status_code == 422, body


async def test_crewai_without_its_extra_is_refused_with_the_install_line(
    sqlite_agent_api: AgentApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    # As Python sees a package that is not installed (the test set-up installs it).
    monkeypatch.setitem(sys.modules, "crewai", None)
    response = await api.client.post(
        "/v1/agents", json={"name": "Crew", "runtime": "crewai"}, headers=acme.headers
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "agent_runtime_unavailable"
    assert "pip install 'vocalis[crewai]'" in body["detail"]
    assert "pip install --no-deps crewai==" in body["detail"]


async def test_client_tools_on_the_agents_sdk_runtime_are_refused_not_dropped(
    sqlite_agent_api: AgentApi,
) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    agent = await api.agent(acme, runtime="openai_agents")
    conversation = await api.conversation(acme, agent["id"])
    weather = ClientTool("get_weather", "The weather.", {"type": "object", "properties": {}})
    turn = await service.begin_turn(
        backends=api.backends,
        runtime=api.runtime,
        org_id=acme.org_id,
        conversation_id=conversation["id"],
        content="Weather in Paris?",
        client_tools=[weather],
    )
    with pytest.raises(VocalisError) as refused:
        _ = [e async for e in turn.events()]
    assert refused.value.code == "client_tools_unsupported"

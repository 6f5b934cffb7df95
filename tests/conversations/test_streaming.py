"""`POST /v1/conversations/{id}/messages` with `stream=true`: server-sent events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from tests.agents_api.harness import REFUND_PASSAGES, AgentApi, sse_events
from vocalis.ports.llm import ChatDelta, ChatMessage, ProviderBadRequest


async def _stream(api: AgentApi, headers: dict[str, str], conversation_id: str, text: str) -> Any:
    return await api.client.post(
        f"/v1/conversations/{conversation_id}/messages",
        json={"content": text, "stream": True},
        headers=headers,
    )


async def test_a_streamed_reply_is_server_sent_events_ending_with_the_stored_message(
    sqlite_agent_api: AgentApi,
) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    agent = await api.agent(acme)
    conversation = await api.conversation(acme, agent["id"])
    response = await _stream(api, acme.headers, conversation["id"], "Hello")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[:-1] == ["message.delta"] * (len(names) - 1)
    assert names[-1] == "message.completed"
    deltas = "".join(json.loads(data)["delta"] for name, data in events[:-1])
    completed = json.loads(events[-1][1])
    assert completed["role"] == "assistant"
    assert completed["content"] == deltas == "Hello! How can I help you today?"
    stored = (
        await api.client.get(f"/v1/conversations/{conversation['id']}", headers=acme.headers)
    ).json()["messages"][-1]
    assert stored["id"] == completed["id"]


async def test_citations_are_streamed_before_the_completed_message(
    sqlite_agent_api: AgentApi,
) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    api.retriever.add(acme.org_id, "kb_policies", REFUND_PASSAGES)
    agent = await api.agent(acme, knowledge_base_ids=["kb_policies"])
    conversation = await api.conversation(acme, agent["id"])
    response = await _stream(
        api, acme.headers, conversation["id"], "How long do refunds take, days?"
    )
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[-2:] == ["citation", "message.completed"]
    citation = json.loads(events[-2][1])
    assert citation["n"] == 1
    assert citation["chunk_id"] == "chk_refund_1"


async def test_tool_calls_and_results_are_streamed_as_their_own_events(
    sqlite_agent_api: AgentApi,
) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    agent = await api.agent(acme, tools=[{"type": "transfer_to_human"}])
    conversation = await api.conversation(acme, agent["id"])
    response = await _stream(api, acme.headers, conversation["id"], "Let me speak to a person")
    names = [name for name, _ in sse_events(response.text)]
    assert names.index("tool_call") < names.index("tool_result") < names.index("handoff")
    assert names[-1] == "message.completed"


async def test_a_refused_message_is_a_problem_response_not_a_stream(
    sqlite_agent_api: AgentApi,
) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    agent = await api.agent(acme)
    conversation = await api.conversation(acme, agent["id"])
    await api.client.post(f"/v1/conversations/{conversation['id']}/end", headers=acme.headers)
    response = await _stream(api, acme.headers, conversation["id"], "Hello")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"


class _RejectingModel:
    """A model whose provider refuses the request (a 4xx is not retried elsewhere)."""

    provider = "scripted"
    model = "rejecting"

    async def complete(self, messages: Sequence[ChatMessage], **_: Any) -> Any:
        raise ProviderBadRequest("unknown model", provider=self.provider, model=self.model)

    async def stream(self, messages: Sequence[ChatMessage], **_: Any) -> AsyncIterator[ChatDelta]:
        raise ProviderBadRequest("unknown model", provider=self.provider, model=self.model)
        yield ChatDelta()  # pragma: no cover - makes this an async generator


async def test_a_failing_turn_ends_the_stream_with_an_error_event(
    sqlite_agent_api: AgentApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    agent = await api.agent(acme)
    conversation = await api.conversation(acme, agent["id"])
    monkeypatch.setattr(api.runtime, "chat_model", lambda org_id, config: _RejectingModel())
    response = await _stream(api, acme.headers, conversation["id"], "Hello")
    name, data = sse_events(response.text)[-1]
    assert name == "error"
    problem = json.loads(data)
    assert problem["code"] == "llm_request_rejected"
    assert problem["status"] == 502
    # The lock was released: the next message is accepted.
    monkeypatch.undo()
    assert (await api.say(acme, conversation["id"], "Hello again")).status_code == 200

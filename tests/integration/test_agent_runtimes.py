"""Each agent runtime (LangGraph, the OpenAI Agents SDK, CrewAI) end to end on the llama.cpp
test model: REST, server-sent events and the realtime WebSocket (the official `openai` SDK's
client), a forced tool call that finds a knowledge-base passage, the refund policy cited
(the `[n]` the model wrote, or — SmolLM2-135M seldom writes one — attributed by the output
guard to the passage that supports the reply), and usage recorded.

`crewai` is an optional extra that the test set-up installs (scripts/install-test-extras.sh);
its refusal with the install line when absent is tested in tests/agents_api/test_runtimes.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import openai
import pytest

from tests.agents_api import harness
from tests.agents_api.harness import REFUND_PASSAGES, LiveServer, sse_events
from tests.fixtures.llama_server import (  # noqa: F401
    MODEL_ALIAS,
    fresh_prompt_cache,
    llama_model,
    llama_server_url,
)
from vocalis.ports.retriever import InMemoryRetriever

TIMEOUT_S = 600  # two llama.cpp generations per turn, on a CPU shared with the suite


@pytest.fixture
async def llama_live(
    llama_live_server: LiveServer,
    llama_server_url: str,  # noqa: F811
) -> tuple[LiveServer, str]:
    """The live server reaching the llama.cpp server, Acme's refund policies in a knowledge
    base, and the llama.cpp server's URL."""
    live = llama_live_server
    live.retriever.add(live.tenant.org_id, "kb_policies", REFUND_PASSAGES)
    await harness.knowledge_base_rows(live.backends, live.tenant.org_id, "kb_policies")
    return live, llama_server_url


CREW = {
    "process": "sequential",
    "members": [
        {
            "role": "Refund desk",
            "goal": "Answer the customer's refund question from the policy passages.",
            "backstory": "You work at Acme's refund desk.",
            "tools": ["search_knowledge"],
        }
    ],
}


def _agent(runtime: str, llama_url: str) -> dict[str, Any]:
    return {
        "name": "Refund desk",
        "instructions": "You answer questions about Acme refunds. Cite passages like [1].",
        "runtime": runtime,
        **({"crew": CREW} if runtime == "crewai" else {}),
        "knowledge_base_ids": ["kb_policies"],
        "tools": [{"type": "search_knowledge"}],
        "model": llama_model(llama_url, timeout_s=90, tool_choice="search_knowledge"),
    }


# Asked over REST and again, in a new conversation, over the realtime WebSocket. (SmolLM2-135M
# answers few questions from a passage; this one it answers "30 days" on every runtime.)
QUESTION = "How many days do I have for refunds?"


def _assert_cites_the_refund_policy(content: str, citations: list[dict[str, Any]]) -> None:
    """The reply cites the refund policy: the passages it marks as `[n]` (each one it was
    given, never an invented number), or, when it marks none, those it was attributed to."""
    assert "refund-policy.md" in {c["document_name"] for c in citations}, (content, citations)
    assert {c["document_name"] for c in citations} <= {"refund-policy.md", "hours.md"}
    numbers = {int(n) for n in re.findall(r"\[(\d+)\]", content)}
    assert all(c["attributed"] is not bool(numbers) for c in citations), (content, citations)
    if numbers:
        assert {c["n"] for c in citations} == numbers


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("runtime", ["langgraph", "openai_agents", "crewai"])
async def test_a_runtime_answers_over_rest_sse_and_realtime_with_a_forced_tool(
    llama_live: tuple[LiveServer, str], runtime: str
) -> None:
    live, llama_url = llama_live
    assert isinstance(live.server_backends.retriever, InMemoryRetriever)
    async with httpx.AsyncClient(
        base_url=live.base_url, headers=live.tenant.headers, timeout=TIMEOUT_S
    ) as http:
        created = await http.post("/v1/agents", json=_agent(runtime, llama_url))
        assert created.status_code == 201, created.text
        agent_id = created.json()["id"]
        conversation = (await http.post(f"/v1/agents/{agent_id}/conversations", json={})).json()
        path = f"/v1/conversations/{conversation['id']}/messages"

        # REST with server-sent events: the forced tool ran and found the passage, its
        # call and result streamed before the message; the llama.cpp model answered.
        await fresh_prompt_cache(llama_url)  # the same answer whatever ran before
        streamed = await http.post(path, json={"content": QUESTION, "stream": True})
        assert streamed.status_code == 200, streamed.text
        events = sse_events(streamed.text)
        names = [name for name, _ in events]
        assert names.index("tool_call") < names.index("tool_result") < len(names) - 1
        call = json.loads(events[names.index("tool_call")][1])
        assert call["name"] == "search_knowledge"
        result = json.loads(events[names.index("tool_result")][1])
        assert re.fullmatch(r"[12] passages found\.", result["content"])  # the refund policy
        assert names[-1] == "message.completed"
        completed = json.loads(events[-1][1])
        assert completed["content"].strip()
        _assert_cites_the_refund_policy(completed["content"], completed["citations"])
        streamed_citations = [json.loads(data) for name, data in events if name == "citation"]
        assert streamed_citations == completed["citations"]
        assert completed["usage"]["model"] == MODEL_ALIAS
        assert completed["usage"]["prompt_tokens"] > 0
        assert completed["usage"]["completion_tokens"] > 0
        stored = (await http.get(f"/v1/conversations/{conversation['id']}")).json()
        assert stored["messages"][-1]["tool_calls"][0]["name"] == "search_knowledge"
        assert stored["messages"][-1]["citations"] == completed["citations"]

    # The realtime WebSocket, through the official SDK's client: the same question in a new
    # conversation, so the same answer and citation.
    await fresh_prompt_cache(llama_url)
    client = openai.AsyncOpenAI(api_key=live.tenant.key, base_url=f"{live.base_url}/v1")
    async with client.realtime.connect(model=agent_id) as connection:
        assert (await connection.recv()).type == "session.created"
        await connection.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        assert (await connection.recv()).type == "session.updated"
        await connection.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": QUESTION}],
            }
        )
        await connection.response.create()
        received: list[dict[str, Any]] = []
        async with asyncio.timeout(TIMEOUT_S):
            async for event in connection:
                data = event.model_dump(mode="json")
                assert data["type"] != "error", data
                received.append(data)
                if data["type"] == "response.done":
                    break
    done = received[-1]["response"]
    assert done["status"] == "completed"
    text = "".join(e["delta"] for e in received if e["type"] == "response.output_text.delta")
    assert text.strip()
    assert done["usage"]["total_tokens"] > 0
    _assert_cites_the_refund_policy(text, received[-1]["vocalis"]["citations"])
    await client.close()


@pytest.mark.timeout(900)
async def test_an_agents_sdk_handoff_goes_to_an_agent_of_the_same_organisation(
    llama_agent_api: tuple[harness.AgentApi, str],
) -> None:
    api, llama_url = llama_agent_api
    acme = await api.tenant("Acme")
    billing = await api.agent(
        acme,
        name="Billing",
        instructions="You handle Acme invoices.",
        model={"provider": "extractive"},  # deterministic: who answered is plain to see
    )
    front = await api.agent(
        acme,
        name="Front desk",
        instructions="You route customers. Invoices go to billing.",
        runtime="openai_agents",
        handoffs=[billing["id"]],
        model=llama_model(
            llama_url, max_tokens=32, timeout_s=90, tool_choice="transfer_to_billing"
        ),  # a forced handoff
    )
    conversation = await api.conversation(acme, front["id"])
    reply = await api.say(acme, conversation["id"], "Hello!")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [c["name"] for c in body["tool_calls"]] == ["transfer_to_billing"]
    # Billing answered, on its own model chain (the extractive responder), not the front's.
    assert body["usage"]["provider"] == "extractive"
    assert body["content"].startswith("Hello")

    # Another organisation's agent is never a handoff target.
    globex = await api.tenant("Globex")
    theirs = await api.agent(globex, name="Theirs")
    refused = await api.client.patch(
        f"/v1/agents/{front['id']}", json={"handoffs": [theirs["id"]]}, headers=acme.headers
    )
    assert refused.status_code == 422
    assert refused.json()["code"] == "agent_handoff_not_found"

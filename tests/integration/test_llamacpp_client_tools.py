"""A client-side function tool round trip through the conversations service, on llama.cpp."""

from __future__ import annotations

import json
from typing import Any

from tests.agents_api.harness import AgentApi
from tests.fixtures.llama_server import MODEL_ALIAS, llama_model, llama_server_url  # noqa: F401
from vocalis.agents.events import ToolCallEvent
from vocalis.agents.tools.client import ClientTool, ToolOutput
from vocalis.conversations import service
from vocalis.conversations.service import TurnResult

WEATHER = ClientTool(
    "get_weather",
    "The current weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


async def _run(api: AgentApi, org_id: str, conversation_id: str, **turn: Any) -> list[Any]:
    started = await service.begin_turn(
        backends=api.backends,
        runtime=api.runtime,
        org_id=org_id,
        conversation_id=conversation_id,
        client_tools=[WEATHER],
        **turn,
    )
    return [e async for e in started.events()]


async def test_the_model_calls_a_client_tool_and_answers_from_its_output(
    llama_agent_api: tuple[AgentApi, str],
) -> None:
    api, llama_url = llama_agent_api
    acme = await api.tenant("Acme")
    model = llama_model(llama_url, timeout_s=60)
    agent = await api.agent(acme, instructions="You report the weather.", model=model)
    conversation = await api.conversation(acme, agent["id"])
    cid = conversation["id"]

    first = await _run(
        api, acme.org_id, cid, content="What is the weather in Paris?", tool_choice="get_weather"
    )
    calls = [e for e in first if isinstance(e, ToolCallEvent)]
    assert [(c.name, c.client) for c in calls] == [("get_weather", True)]
    assert isinstance(json.loads(calls[0].arguments)["city"], str)
    awaiting = first[-1]
    assert isinstance(awaiting, TurnResult)
    assert awaiting.awaiting_tool_calls == (calls[0].id,)
    assert awaiting.final.usage.model == MODEL_ALIAS  # the llama.cpp model, not a fallback

    output = "Sunny, 18 degrees Celsius."
    second = await _run(
        api,
        acme.org_id,
        cid,
        content="",
        tool_outputs=[ToolOutput(calls[0].id, output)],
        tool_choice="none",
    )
    answer = second[-1]
    assert isinstance(answer, TurnResult)
    assert answer.awaiting_tool_calls == ()
    assert "18 degrees" in answer.final.content  # the answer is built on the output
    assert answer.final.usage.model == MODEL_ALIAS
    stored = await service.transcript(api.backends, org_id=acme.org_id, conversation_id=cid)
    assert [m["role"] for m in stored] == ["user", "assistant", "assistant"]
    assert stored[1]["tool_results"][0]["content"] == output

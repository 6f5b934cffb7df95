"""Client-side function tools through the conversations service: turns that await outputs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from tests.agents_api.harness import AgentApi
from tests.api.conftest import Tenant
from tests.unit.agents.conftest import ScriptedChatModel, say
from vocalis.agents.events import ToolCallEvent, ToolResultEvent
from vocalis.agents.tools.base import ToolConfigError
from vocalis.agents.tools.client import (
    ClientTool,
    ClientToolNameTaken,
    ToolOutput,
    ToolOutputNotAwaited,
)
from vocalis.conversations import service
from vocalis.conversations.service import TurnResult
from vocalis.ports.llm import ToolCall

WEATHER = ClientTool(
    "get_weather",
    "The current weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
WEATHER_CALL = ToolCall("call_w1", "get_weather", '{"city": "Paris"}')
SUNNY = json.dumps({"temperature_c": 18, "sky": "sunny"})


async def _turn(
    api: AgentApi,
    tenant: Tenant,
    conversation_id: str,
    content: str,
    outputs: Sequence[ToolOutput] = (),
    tools: Sequence[ClientTool] = (WEATHER,),
    **options: Any,
) -> tuple[list[Any], TurnResult]:
    turn = await service.begin_turn(
        backends=api.backends,
        runtime=api.runtime,
        org_id=tenant.org_id,
        conversation_id=conversation_id,
        content=content,
        client_tools=tools,
        tool_outputs=outputs,
        **options,
    )
    events = [e async for e in turn.events()]
    result = events[-1]
    assert isinstance(result, TurnResult)
    return events[:-1], result


async def _setup(
    api: AgentApi, monkeypatch: pytest.MonkeyPatch, *steps: Any, **agent: Any
) -> tuple[Tenant, str, ScriptedChatModel]:
    acme = await api.tenant("Acme")
    created = await api.agent(acme, **agent)
    conversation = await api.conversation(acme, created["id"])
    model = ScriptedChatModel(list(steps))
    monkeypatch.setattr(api.runtime, "chat_model", lambda org_id, config: model)
    return acme, conversation["id"], model


async def _transcript(api: AgentApi, tenant: Tenant, conversation_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/v1/conversations/{conversation_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_a_client_tool_call_ends_the_turn_awaiting_its_output(
    sqlite_agent_api: AgentApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = sqlite_agent_api
    acme, cid, _ = await _setup(api, monkeypatch, say("", WEATHER_CALL))
    events, result = await _turn(api, acme, cid, "What's the weather in Paris?")
    calls = [e for e in events if isinstance(e, ToolCallEvent)]
    assert [(c.id, c.name, c.client) for c in calls] == [("call_w1", "get_weather", True)]
    assert not [e for e in events if isinstance(e, ToolResultEvent)]
    assert result.awaiting_tool_calls == ("call_w1",)
    assert result.message["content"] == ""
    assert result.message["tool_calls"] == [
        {"id": "call_w1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    ]
    assert not result.conversation_ended


async def test_the_output_continues_the_turn_without_a_user_message(
    sqlite_agent_api: AgentApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = sqlite_agent_api
    acme, cid, model = await _setup(
        api, monkeypatch, say("", WEATHER_CALL), say("It is sunny and 18 degrees in Paris.")
    )
    await _turn(api, acme, cid, "What's the weather in Paris?")
    _, result = await _turn(api, acme, cid, "", [ToolOutput("call_w1", SUNNY)])
    assert result.final.content == "It is sunny and 18 degrees in Paris."
    assert result.awaiting_tool_calls == ()
    assert model.requests[1].messages[-1].content == SUNNY
    transcript = await _transcript(api, acme, cid)
    messages = transcript["messages"]
    assert [(m["role"], m["sequence"]) for m in messages] == [
        ("user", 1),
        ("assistant", 2),
        ("assistant", 3),
    ]
    assert messages[1]["tool_results"] == [
        {"id": "call_w1", "name": "get_weather", "content": SUNNY, "is_error": False}
    ]
    assert messages[2]["content"] == "It is sunny and 18 degrees in Paris."
    assert transcript["message_count"] == 3


async def test_a_client_tool_may_not_shadow_an_agent_tool(
    sqlite_agent_api: AgentApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = sqlite_agent_api
    acme, cid, _ = await _setup(
        api, monkeypatch, say("Hello."), tools=[{"type": "transfer_to_human"}]
    )
    with pytest.raises(ClientToolNameTaken) as refused:
        await _turn(api, acme, cid, "hi", tools=[ClientTool("transfer_to_human")])
    assert refused.value.code == "client_tool_name_taken"
    _, result = await _turn(api, acme, cid, "hi")  # nothing stored, the lock was released
    assert result.message["sequence"] == 2


async def test_an_output_for_a_call_not_awaited_is_refused(
    sqlite_agent_api: AgentApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = sqlite_agent_api
    acme, cid, _ = await _setup(api, monkeypatch, say("", WEATHER_CALL), say("Fine."))
    await _turn(api, acme, cid, "What's the weather in Paris?")
    with pytest.raises(ToolOutputNotAwaited) as refused:
        await _turn(api, acme, cid, "", [ToolOutput("call_nope", SUNNY)])
    assert refused.value.code == "tool_output_not_awaited"
    _, result = await _turn(api, acme, cid, "", [ToolOutput("call_w1", SUNNY)])
    assert result.final.content == "Fine."


async def test_a_late_output_after_the_conversation_moved_on_is_refused(
    sqlite_agent_api: AgentApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = sqlite_agent_api
    acme, cid, _ = await _setup(api, monkeypatch, say("", WEATHER_CALL), say("Sure."))
    await _turn(api, acme, cid, "What's the weather in Paris?")
    await _turn(api, acme, cid, "Never mind.")
    with pytest.raises(ToolOutputNotAwaited):
        await _turn(api, acme, cid, "", [ToolOutput("call_w1", SUNNY)])


async def test_a_turn_may_force_a_client_tool(
    sqlite_agent_api: AgentApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = sqlite_agent_api
    acme, cid, model = await _setup(api, monkeypatch, say("", WEATHER_CALL))
    await _turn(api, acme, cid, "Paris?", tool_choice="get_weather")
    assert model.requests[0].tool_choice == "get_weather"
    with pytest.raises(ToolConfigError):
        await _turn(api, acme, cid, "Paris?", tool_choice="no_such_tool")


async def test_outputs_are_recorded_in_the_mongo_document_store(
    mongo_agent_api: AgentApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = mongo_agent_api
    acme, cid, _ = await _setup(api, monkeypatch, say("", WEATHER_CALL), say("Sunny."))
    await _turn(api, acme, cid, "What's the weather in Paris?")
    _, result = await _turn(api, acme, cid, "", [ToolOutput("call_w1", SUNNY)])
    assert result.final.content == "Sunny."
    messages = (await _transcript(api, acme, cid))["messages"]
    assert messages[1]["tool_results"][0]["content"] == SUNNY

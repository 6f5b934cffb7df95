"""A client-side function tool round trip through the official `openai` SDK's realtime client,
against an agent whose model is the llama.cpp test server.

The session declares a function tool; the model calls it; the client gets
`response.function_call_arguments.done`, runs the function itself and answers with a
`function_call_output` item and `response.create`; the model's final answer is built on
that output, which the transcript records on the call.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest

from tests.agents_api.harness import LiveServer
from tests.fixtures.llama_server import llama_model, llama_server_url  # noqa: F401
from tests.realtime.client import create_agent

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
WEATHER_OUTPUT = "Sunny, 18 degrees Celsius."
TIMEOUT_S = 90


@pytest.fixture
async def llama_live(
    llama_live_server: LiveServer,
    llama_server_url: str,  # noqa: F811
) -> tuple[LiveServer, str]:
    """The live server, allowed to reach the local llama.cpp server, and an agent using it."""
    agent_id = await create_agent(
        llama_live_server,
        name="Weather desk",
        instructions="You report the weather.",
        model=llama_model(llama_server_url, timeout_s=60),
    )
    return llama_live_server, agent_id


async def _response(connection: Any) -> list[dict[str, Any]]:
    """The events of one response, up to its `response.done` (an `error` fails the test)."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(TIMEOUT_S):
        async for event in connection:
            data = event.model_dump(mode="json")
            assert data["type"] != "error", data
            events.append(data)
            if data["type"] == "response.done":
                return events
    raise AssertionError(f"the connection closed before response.done: {events}")


def _of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


async def test_a_client_function_tool_round_trip_through_the_sdk(
    llama_live: tuple[LiveServer, str],
) -> None:
    live, agent_id = llama_live
    client = openai.AsyncOpenAI(api_key=live.tenant.key, base_url=f"{live.base_url}/v1")
    async with client.realtime.connect(model=agent_id) as connection:
        assert (await connection.recv()).type == "session.created"
        await connection.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["text"],
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "function", "name": "get_weather"},
            }
        )
        updated = await connection.recv()
        assert updated.type == "session.updated", updated
        assert [t.name for t in updated.session.tools or []] == ["get_weather"]

        await connection.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "What is the weather in Paris?"}],
            }
        )
        await connection.response.create()
        first = await _response(connection)
        [call] = _of(first, "response.function_call_arguments.done")
        assert call["name"] == "get_weather"
        assert isinstance(json.loads(call["arguments"]), dict)
        done = _of(first, "response.done")[0]["response"]
        assert done["status"] == "completed"
        assert [(o["type"], o["call_id"]) for o in done["output"]] == [
            ("function_call", call["call_id"])
        ]

        await connection.conversation.item.create(
            item={
                "type": "function_call_output",
                "call_id": call["call_id"],
                "output": WEATHER_OUTPUT,
            }
        )
        await connection.response.create()
        second = await _response(connection)
        answer = _of(second, "response.done")[0]["response"]
        assert answer["status"] == "completed"
        text = "".join(e["delta"] for e in _of(second, "response.output_text.delta"))
        assert "18 degrees" in text, text  # the answer is built on the output
        assert not _of(second, "response.function_call_arguments.done")
        conversation_id = answer["conversation_id"]

    async with httpx.AsyncClient(base_url=live.base_url, headers=live.tenant.headers) as http:
        stored = (await http.get(f"/v1/conversations/{conversation_id}")).json()
    calls = [m for m in stored["messages"] if m["tool_calls"]]
    assert calls[0]["tool_calls"][0]["id"] == call["call_id"]
    assert calls[0]["tool_results"][0]["content"] == WEATHER_OUTPUT
    assert stored["messages"][-1]["content"].strip() == text.strip()

"""The OpenAI-compatible surface as peer clients use it, against an agent on the llama.cpp
test model: LangChain's `ChatOpenAI` (`bind_tools`, `with_structured_output` by JSON schema
and by function calling), the OpenAI Agents SDK (a `function_tool` and an `output_type`),
LlamaIndex's `OpenAILike` with its defaults (`/v1/completions`), and the official SDK's
`max_tokens`, `stop` and streamed tool calls. Every client is used unmodified.

The model is tiny (SmolLM2-135M): tool calls are forced by naming the tool, and structured
answers are held to their schema by the server's grammar, as a real deployment would do
with a small local model.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.agents_api import harness
from tests.agents_api.harness import LiveServer
from tests.fixtures.llama_server import llama_model, llama_server_url  # noqa: F401

pytestmark = pytest.mark.timeout(900)

TIMEOUT_S = 300  # llama.cpp generations on a CPU shared with the suite


class Weather(BaseModel):
    """The structured answer the clients ask for."""

    city: Literal["Paris", "London", "Rome"]
    sky: Literal["sunny", "rainy", "cloudy"]


@pytest.fixture
async def agent_server(
    tmp_path: Path,
    redis_url: str,
    llama_server_url: str,  # noqa: F811
) -> AsyncIterator[tuple[LiveServer, str]]:
    """A live server with an agent on the llama.cpp model; yields it and the agent's id."""
    settings = harness.sqlite_settings(
        tmp_path, redis_url, outbound_allowlist=harness.LOCAL_SERVERS
    )
    async for live in harness.serve_live(settings, fakes=False):
        agent = {
            "name": "Weather desk",
            "instructions": "You are a helpful assistant. Answer briefly.",
            "model": llama_model(llama_server_url, timeout_s=120),
        }
        async with live.client() as http:
            created = await http.post("/v1/agents", json=agent)
        assert created.status_code == 201, created.text
        yield live, created.json()["id"]


def _sdk(live: LiveServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=live.tenant.key, base_url=f"{live.base_url}/v1", timeout=TIMEOUT_S
    )


def _chat_openai(live: LiveServer, agent_id: str) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=agent_id,
        api_key=live.tenant.key,  # type: ignore[arg-type]
        base_url=f"{live.base_url}/v1",
        temperature=0,
        timeout=TIMEOUT_S,
        max_retries=0,
    )


def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"It is sunny in {city}."


async def test_langchain_bind_tools_gets_a_tool_call_and_continues_with_its_result(
    agent_server: tuple[LiveServer, str],
) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage

    live, agent_id = agent_server
    llm = _chat_openai(live, agent_id)
    question = HumanMessage("What is the weather in Paris?")
    called = await llm.bind_tools([get_weather], tool_choice="get_weather").ainvoke([question])
    [call] = called.tool_calls
    assert call["name"] == "get_weather"
    assert isinstance(call["args"]["city"], str)
    assert called.response_metadata["finish_reason"] == "tool_calls"
    # The client ran the tool; the agent's model goes on from its result.
    result = ToolMessage(get_weather(call["args"]["city"]), tool_call_id=call["id"])
    answer = await llm.bind_tools([get_weather]).ainvoke([question, called, result])
    assert not answer.tool_calls
    assert isinstance(answer.content, str) and answer.content.strip()
    assert answer.response_metadata["finish_reason"] in ("stop", "length")


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
async def test_langchain_with_structured_output(
    agent_server: tuple[LiveServer, str], method: str
) -> None:
    live, agent_id = agent_server
    llm = _chat_openai(live, agent_id).with_structured_output(Weather, method=method)
    answer = await llm.ainvoke("The weather in Rome is rainy. Which city, and what sky?")
    assert isinstance(answer, Weather)


async def test_the_agents_sdk_runs_a_function_tool_and_answers_its_output_type(
    agent_server: tuple[LiveServer, str],
) -> None:
    from agents import (
        Agent,
        ModelSettings,
        OpenAIChatCompletionsModel,
        RunConfig,
        Runner,
        function_tool,
    )

    live, agent_id = agent_server
    calls: list[str] = []

    @function_tool
    def weather_in(city: str) -> str:
        """Get the current weather in a city."""
        calls.append(city)
        return f"It is sunny in {city}."

    agent = Agent(
        name="Weather",
        instructions="Look the weather up with the tool, then answer.",
        tools=[weather_in],
        output_type=Weather,
        model=OpenAIChatCompletionsModel(model=agent_id, openai_client=_sdk(live)),
        model_settings=ModelSettings(tool_choice="weather_in", temperature=0.0),
    )
    result = await Runner.run(
        agent, "What is the weather in Paris?", run_config=RunConfig(tracing_disabled=True)
    )
    assert len(calls) == 1 and isinstance(calls[0], str)
    assert isinstance(result.final_output, Weather)


async def test_llamaindex_openailike_with_its_defaults_completes_and_streams(
    agent_server: tuple[LiveServer, str],
) -> None:
    from llama_index.llms.openai_like import OpenAILike

    live, agent_id = agent_server
    llm = OpenAILike(
        model=agent_id, api_base=f"{live.base_url}/v1", api_key=live.tenant.key, timeout=TIMEOUT_S
    )
    assert not llm.is_chat_model  # its default: the legacy completions endpoint
    completion = await llm.acomplete("Say hello.")
    assert completion.text.strip()
    assert completion.raw.object == "text_completion"
    streamed = [part.delta async for part in await llm.astream_complete("Say hello.")]
    assert len(streamed) > 1 and "".join(d or "" for d in streamed).strip()


async def test_max_tokens_and_stop_are_honoured(agent_server: tuple[LiveServer, str]) -> None:
    live, agent_id = agent_server
    client = _sdk(live)
    question = [{"role": "user", "content": "Describe the city of Paris in detail."}]
    short = await client.chat.completions.create(
        model=agent_id, messages=question, max_completion_tokens=4
    )
    assert short.choices[0].finish_reason == "length"
    assert short.usage is not None and 0 < short.usage.completion_tokens <= 4
    full = await client.chat.completions.create(model=agent_id, messages=question, max_tokens=40)
    text = full.choices[0].message.content or ""
    words = text.split()
    assert len(words) > 4, text
    stop = f" {words[3]}"  # a word the answer reaches: the answer must end just before it
    stopped = await client.chat.completions.create(
        model=agent_id, messages=question, max_tokens=40, stop=[stop]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert (stopped.choices[0].message.content or "").strip() == text[: text.index(stop)].strip()
    # The legacy completions endpoint takes them too.
    legacy = await client.completions.create(
        model=agent_id, prompt="Describe the city of Paris in detail.", max_tokens=4
    )
    assert legacy.choices[0].finish_reason == "length"


async def test_a_streamed_client_tool_call_comes_as_tool_call_chunks(
    agent_server: tuple[LiveServer, str],
) -> None:
    live, agent_id = agent_server
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    stream = await _sdk(live).chat.completions.create(
        model=agent_id,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[tool],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    calls: list[Any] = []
    finish: str | None = None
    async for chunk in stream:
        if not chunk.choices:
            continue
        calls.extend(chunk.choices[0].delta.tool_calls or [])
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    [call] = calls
    assert call.function.name == "get_weather" and call.id
    assert isinstance(json.loads(call.function.arguments)["city"], str)


async def test_with_user_the_server_holds_the_history_and_takes_the_tool_outputs(
    agent_server: tuple[LiveServer, str],
) -> None:
    """With `user`, the conversation is kept: the continuation's `tool` messages answer the
    calls it ended awaiting, and the same conversation goes on."""
    live, agent_id = agent_server
    client = _sdk(live)
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    question: dict[str, Any] = {"role": "user", "content": "What is the weather in Paris?"}
    first = await client.chat.completions.create(
        model=agent_id,
        messages=[question],  # type: ignore[list-item]
        tools=[tool],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        user="u-42",
        max_tokens=24,
    )
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls or []
    conversation = first.model_extra["vocalis"]["conversation_id"]  # type: ignore[index]
    second = await client.chat.completions.create(
        model=agent_id,
        messages=[
            question,
            first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "It is sunny in Paris."},
        ],
        tools=[tool],  # type: ignore[list-item]
        user="u-42",
        max_tokens=24,
    )
    assert second.choices[0].finish_reason in ("stop", "length")
    assert (second.choices[0].message.content or "").strip()
    assert second.model_extra["vocalis"]["conversation_id"] == conversation  # type: ignore[index]
    async with httpx.AsyncClient(
        base_url=live.base_url, headers=live.tenant.headers, timeout=30
    ) as http:
        stored = (await http.get(f"/v1/conversations/{conversation}")).json()
    calls = [c for m in stored["messages"] for c in m.get("tool_calls") or []]
    assert [c["name"] for c in calls] == ["get_weather"]

"""The OpenAI-compatible provider against a real llama.cpp server, through the agent runtime."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.fixtures.llama_server import MODEL_ALIAS, llama_server_url  # noqa: F401
from vocalis.adapters.openai_chat import OpenAIChatModel
from vocalis.agents.events import FinalMessage, TextDelta, ToolCallEvent, ToolResultEvent
from vocalis.agents.extractive import ExtractiveResponder
from vocalis.agents.graph import (
    AgentContext,
    AgentSpec,
    TurnLimits,
    build_agent_graph,
    run_agent,
)
from vocalis.agents.providers import FallbackChatModel
from vocalis.agents.tools.base import build_toolbox
from vocalis.core.ssrf import Allowlist
from vocalis.ports.llm import ChatEndpoint

ORDERS: list[str] = []


class _OrdersApi(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ORDERS.append(self.path)
        body = json.dumps({"status": "shipped"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def orders_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OrdersApi)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    ORDERS.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def context(url: str, conversation_id: str, **agent: Any) -> AgentContext:
    tools = agent.pop("tools", [])
    endpoint = ChatEndpoint(model=MODEL_ALIAS, base_url=url, provider="llamacpp", timeout_s=60)
    model = FallbackChatModel([OpenAIChatModel(endpoint), ExtractiveResponder()])
    return AgentContext(
        org_id="org_it",
        conversation_id=conversation_id,
        agent=AgentSpec(agent_id="agt_it", max_tokens=48, temperature=0.0, **agent),
        model=model,
        toolbox=build_toolbox(tools),
        outbound_allowlist=Allowlist(["127.0.0.1"]),
    )


async def test_a_streamed_reply_comes_from_the_llamacpp_server(llama_server_url: str) -> None:  # noqa: F811
    ctx = context(llama_server_url, "cnv_it_stream", instructions="Answer in one sentence.")
    events = [e async for e in run_agent(build_agent_graph(), ctx, "Say hello to me.")]
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    final = events[-1]
    assert isinstance(final, FinalMessage)
    assert (final.usage.provider, final.usage.model) == ("llamacpp", MODEL_ALIAS)
    assert len(deltas) > 1, "the reply should arrive in several deltas"
    assert final.content == "".join(deltas).strip()
    assert final.usage.completion_tokens > 0


async def test_a_forced_tool_call_runs_the_tool_end_to_end(
    llama_server_url: str,  # noqa: F811
    orders_api: str,
) -> None:
    lookup = {
        "type": "http_request",
        "name": "lookup_order",
        "description": "Look up the status of an order by its id.",
        "method": "GET",
        "url": f"{orders_api}/orders/{{order_id}}",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    }
    ctx = context(
        llama_server_url,
        "cnv_it_tool",
        instructions="You look up orders.",
        tools=[lookup],
        tool_choice="lookup_order",
        limits=TurnLimits(max_tool_iterations=1),
    )
    events = [e async for e in run_agent(build_agent_graph(), ctx, "Where is order A17?")]
    calls = [e for e in events if isinstance(e, ToolCallEvent)]
    assert [c.name for c in calls] == ["lookup_order"]
    assert isinstance(json.loads(calls[0].arguments)["order_id"], str)
    results = [e for e in events if isinstance(e, ToolResultEvent)]
    assert len(results) == 1 and not results[0].is_error, results
    assert len(ORDERS) == 1 and ORDERS[0].startswith("/orders/")
    final = events[-1]
    assert isinstance(final, FinalMessage) and final.usage.provider == "llamacpp"

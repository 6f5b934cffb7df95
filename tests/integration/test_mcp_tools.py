"""MCP servers as agent tools, against a real MCP server (the `mcp` SDK's own `MCPServer`,
over streamable HTTP, SSE and stdio) and the llama.cpp test model."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.agents_api.harness import AgentApi, start_agent_api
from tests.api.conftest import make_settings
from tests.fixtures.llama_server import MODEL_ALIAS, llama_server_url  # noqa: F401
from tests.fixtures.mcp_server import CALLS, TOKEN, McpServers
from tests.fixtures.mcp_server import mcp_servers as mcp_servers  # the fixture
from vocalis.agents.events import ToolCallEvent, ToolResultEvent
from vocalis.agents.schemas import AgentConfig
from vocalis.conversations import service
from vocalis.conversations.service import TurnResult

STDIO = {
    "orders": {"command": [sys.executable, "-m", "tests.fixtures.mcp_server"]},
    # A published MCP server from PyPI (mcp-server-time, the reference time server), unmodified.
    "time": {"command": [sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"]},
}


async def _api(tmp_path: Path, redis_url: str, **overrides: Any) -> AsyncIterator[AgentApi]:
    url = f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
    async for api in start_agent_api(make_settings(tmp_path, url, redis_url, **overrides)):
        yield api


@pytest.fixture
async def mcp_api(tmp_path: Path, redis_url: str) -> AsyncIterator[AgentApi]:
    """The app allowed to reach 127.0.0.1 (the MCP and llama.cpp servers), with a stdio
    server on the operator's allow-list."""
    async for api in _api(
        tmp_path, redis_url, outbound_allowlist="127.0.0.1", mcp_stdio_servers=STDIO
    ):
        yield api


@pytest.fixture
async def guarded_api(tmp_path: Path, redis_url: str) -> AsyncIterator[AgentApi]:
    """The app with no allow-list: private addresses are refused."""
    async for api in _api(tmp_path, redis_url):
        yield api


def _count(operation: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "vocalis_mcp_requests_total", {"operation": operation, "outcome": outcome}
    )
    return value or 0.0


async def _register(api: AgentApi, tenant_headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await api.client.post("/v1/mcp-servers", json=body, headers=tenant_headers)
    assert response.status_code == 201, response.text
    assert TOKEN not in response.text
    return dict(response.json())


async def test_servers_are_registered_and_list_their_tools_live(
    mcp_api: AgentApi, mcp_servers: McpServers
) -> None:
    api = mcp_api
    acme = await api.tenant("Acme")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    http = await _register(api, acme.headers, name="orders", url=mcp_servers.http_url, headers=auth)
    assert http["id"].startswith("mcs_")
    assert (http["transport"], http["header_names"]) == ("streamable_http", ["Authorization"])
    sse = await _register(
        api, acme.headers, name="orders-sse", url=mcp_servers.sse_url, headers=auth
    )
    assert sse["transport"] == "sse"
    stdio = await _register(api, acme.headers, name="orders-stdio", url="stdio:orders")
    assert stdio["transport"] == "stdio"

    before = _count("list_tools", "ok")
    for server in (http, sse, stdio):
        listed = await api.client.get(f"/v1/mcp-servers/{server['id']}/tools", headers=acme.headers)
        assert listed.status_code == 200, listed.text
        tools = {t["name"]: t for t in listed.json()["data"]}
        assert set(tools) == {"order_status", "cancel_order", "big_report"}
        schema = tools["order_status"]["input_schema"]
        assert schema["required"] == ["order_id"]
        assert "shipping status" in tools["order_status"]["description"]
    assert _count("list_tools", "ok") == before + 3
    # The stored header reached the server (which refuses requests without it).
    assert any(h.get("authorization") == f"Bearer {TOKEN}" for h in mcp_servers.http_guard.seen)

    # Without the header the server answers 401: a clear 502, the token nowhere.
    bare = await _register(api, acme.headers, name="no-auth", url=mcp_servers.http_url)
    failed = await api.client.get(f"/v1/mcp-servers/{bare['id']}/tools", headers=acme.headers)
    assert failed.status_code == 502
    assert failed.json()["code"] == "mcp_server_unavailable"

    everything = await api.client.get("/v1/mcp-servers", headers=acme.headers)
    assert {s["name"] for s in everything.json()["data"]} == {
        "orders",
        "orders-sse",
        "orders-stdio",
        "no-auth",
    }
    assert TOKEN not in everything.text
    globex = await api.tenant("Globex")
    theirs = await api.client.get(f"/v1/mcp-servers/{http['id']}/tools", headers=globex.headers)
    assert theirs.status_code == 404

    refused = await api.client.post(
        "/v1/mcp-servers", json={"name": "x", "url": "stdio:bash"}, headers=acme.headers
    )
    assert refused.status_code == 400
    assert refused.json()["code"] == "mcp_stdio_not_allowed"
    deleted = await api.client.delete(f"/v1/mcp-servers/{bare['id']}", headers=acme.headers)
    assert deleted.status_code == 204


async def test_a_private_mcp_url_is_refused_unless_allow_listed(
    guarded_api: AgentApi, mcp_servers: McpServers
) -> None:
    api = guarded_api
    acme = await api.tenant("Acme")
    for url in (mcp_servers.http_url, "http://10.0.0.7/mcp", "http://169.254.169.254/sse"):
        response = await api.client.post(
            "/v1/mcp-servers",
            json={"name": "x", "url": url, "headers": {"Authorization": f"Bearer {TOKEN}"}},
            headers=acme.headers,
        )
        assert response.status_code == 400, url
        assert response.json()["code"] == "outbound_url_forbidden"
        assert TOKEN not in response.text
    stdio = await api.client.post(
        "/v1/mcp-servers", json={"name": "x", "url": "stdio:orders"}, headers=acme.headers
    )
    assert stdio.json()["code"] == "mcp_stdio_not_allowed"  # no operator allow-list here


async def test_an_agent_calls_an_mcp_tool_end_to_end_on_the_llama_model(
    mcp_api: AgentApi,
    mcp_servers: McpServers,
    llama_server_url: str,  # noqa: F811
) -> None:
    api = mcp_api
    acme = await api.tenant("Acme")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    server = await _register(
        api, acme.headers, name="orders", url=mcp_servers.http_url, headers=auth
    )
    model = {
        "provider": "openai",
        "model": MODEL_ALIAS,
        "base_url": llama_server_url,
        "temperature": 0.0,
        "max_tokens": 48,
        "timeout_s": 60,
        "tool_choice": "order_status",
    }
    body = {
        "instructions": "You track Acme orders. Use the order_status tool.",
        "model": model,
        "mcp_servers": [{"server_id": server["id"], "allowed_tools": ["order_status"]}],
    }
    agent = await api.agent(acme, **body)

    # Only the allowed tool is offered.
    ctx = api.runtime.context(
        org_id=acme.org_id,
        conversation_id="cnv_probe",
        agent_id=agent["id"],
        config=AgentConfig.model_validate({k: agent[k] for k in AgentConfig.model_fields}),
    )
    offered = await api.runtime.with_mcp_tools(ctx)
    assert sorted(offered.toolbox.tools) == ["order_status"]

    CALLS.clear()
    before = _count("call_tool", "ok")
    conversation = await api.conversation(acme, agent["id"])
    started = await service.begin_turn(
        backends=api.backends,
        runtime=api.runtime,
        org_id=acme.org_id,
        conversation_id=conversation["id"],
        content="Where is my order A-1001?",
    )
    events = [e async for e in started.events()]
    calls = [e for e in events if isinstance(e, ToolCallEvent)]
    results = [e for e in events if isinstance(e, ToolResultEvent)]
    assert [c.name for c in calls][:1] == ["order_status"]
    assert results and "shipped on 2 December" in results[0].content
    assert not results[0].is_error
    assert CALLS and CALLS[0][0] == "order_status"  # the real server ran it
    assert _count("call_tool", "ok") >= before + 1
    final = events[-1]
    assert isinstance(final, TurnResult)
    assert final.final.usage.model == MODEL_ALIAS

    # Another organisation cannot reference the server.
    globex = await api.tenant("Globex")
    foreign = await api.client.post(
        "/v1/agents",
        json={"name": "x", "mcp_servers": [{"server_id": server["id"]}]},
        headers=globex.headers,
    )
    assert foreign.status_code == 422
    assert foreign.json()["code"] == "mcp_server_not_found"


async def test_tool_results_are_capped_and_failures_are_results(
    mcp_api: AgentApi, mcp_servers: McpServers
) -> None:
    api = mcp_api
    acme = await api.tenant("Acme")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    server = await _register(
        api, acme.headers, name="orders", url=mcp_servers.http_url, headers=auth
    )
    gateway = api.runtime.mcp
    big = await gateway.call(acme.org_id, server["id"], "big_report", {})
    assert big.data["truncated"] is True
    assert len(big.content.encode()) == api.settings.mcp_max_result_bytes
    missing = await gateway.call(acme.org_id, server["id"], "no_such_tool", {})
    assert missing.is_error
    other = await gateway.call("org_other", server["id"], "order_status", {"order_id": "A"})
    assert other.is_error and "no longer registered" in other.content


async def test_a_published_mcp_server_from_pypi_lists_and_answers(mcp_api: AgentApi) -> None:
    api = mcp_api
    acme = await api.tenant("Acme")
    server = await _register(api, acme.headers, name="time", url="stdio:time")
    listed = await api.client.get(f"/v1/mcp-servers/{server['id']}/tools", headers=acme.headers)
    assert listed.status_code == 200, listed.text
    names = {t["name"] for t in listed.json()["data"]}
    assert {"get_current_time", "convert_time"} <= names
    result = await api.runtime.mcp.call(
        acme.org_id, server["id"], "get_current_time", {"timezone": "Europe/Paris"}
    )
    assert not result.is_error, result.content
    assert "Europe/Paris" in result.content

"""A redirect cannot carry an outbound call past the SSRF guard (issue 15).

Every call a user can aim — an agent's model endpoint, an MCP server, a webhook endpoint,
the `http_request` tool — goes to a real HTTP server on 127.0.0.1, which the allow-list
(`127.0.0.1/32`) treats as a permitted address, and that server answers `302` to a second
server on 127.0.0.2: a loopback address the allow-list does not cover. The guard re-checks
every hop (or the client follows no redirect at all), so the second server is never reached.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.agents_api.harness import AgentApi, start_agent_api
from tests.api.conftest import make_settings
from vocalis.adapters.env_secrets import EnvSecretProvider
from vocalis.adapters.mcp_client import McpSdkClient
from vocalis.agents.tools.base import ToolContext, build_toolbox
from vocalis.core.ssrf import Allowlist
from vocalis.events.outbox import record_event
from vocalis.ports.llm import ToolCall
from vocalis.ports.mcp import McpEndpoint
from vocalis.webhooks import dispatch
from vocalis.webhooks.delivery import attempt_delivery
from vocalis.webhooks.models import WebhookAttempt

ALLOWED = "127.0.0.1/32"  # the "public" host; 127.0.0.2 stays forbidden


@dataclass
class Hosts:
    """The allow-listed redirector and the forbidden target, with what each one saw."""

    redirector_url: str
    target_url: str
    redirected: list[str]
    reached: list[str]


def _handler(seen: list[str], location: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append(f"{self.command} {self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if location is not None:
                self.send_response(302)
                self.send_header("Location", location + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps({"reached": True}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    reached: list[str] = []
    redirected: list[str] = []
    target = ThreadingHTTPServer(("127.0.0.2", 0), _handler(reached, None))
    target_url = f"http://127.0.0.2:{target.server_address[1]}"
    redirector = ThreadingHTTPServer(("127.0.0.1", 0), _handler(redirected, target_url))
    servers = (target, redirector)
    for server in servers:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield Hosts(f"http://127.0.0.1:{redirector.server_address[1]}", target_url, redirected, reached)
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def api(tmp_path: Path, redis_url: str) -> AsyncIterator[AgentApi]:
    url = f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
    settings = make_settings(tmp_path, url, redis_url, outbound_allowlist=ALLOWED)
    async for running in start_agent_api(settings):
        yield running


async def test_the_redirect_target_itself_is_reachable_without_the_guard(hosts: Hosts) -> None:
    """The set-up is sound: the target answers whoever asks it directly."""
    import httpx

    async with httpx.AsyncClient() as client:
        response = await client.get(f"{hosts.redirector_url}/probe", follow_redirects=True)
    assert response.json() == {"reached": True}
    assert hosts.reached == ["GET /probe"]


async def test_an_agents_model_endpoint_redirecting_to_loopback_is_not_followed(
    api: AgentApi, hosts: Hosts
) -> None:
    acme = await api.tenant("Acme")
    model = {
        "provider": "openai",
        "model": "gpt-test",
        "base_url": f"{hosts.redirector_url}/v1",
        "timeout_s": 5,
    }
    agent = await api.agent(acme, model=model)  # the first hop is allowed when saved
    conversation = await api.conversation(acme, agent["id"])
    reply = await api.say(acme, conversation["id"], "Hello?")
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["provider"] == "extractive"  # the endpoint failed over
    assert hosts.redirected == ["POST /v1/chat/completions"]
    assert hosts.reached == []


async def test_an_mcp_server_redirecting_to_loopback_is_not_followed(
    api: AgentApi, hosts: Hosts
) -> None:
    acme = await api.tenant("Acme")
    created = await api.client.post(
        "/v1/mcp-servers",
        json={"name": "tools", "url": f"{hosts.redirector_url}/mcp"},
        headers=acme.headers,
    )
    assert created.status_code == 201, created.text
    listed = await api.client.get(
        f"/v1/mcp-servers/{created.json()['id']}/tools", headers=acme.headers
    )
    assert listed.status_code in (400, 502), listed.text
    assert listed.json()["code"] in ("outbound_url_forbidden", "mcp_server_unavailable")
    assert hosts.redirected and hosts.reached == []

    # The adapter itself, told to follow nothing it has not checked, refuses the same hop.
    client = McpSdkClient([ALLOWED])
    for transport in ("streamable_http", "sse"):
        endpoint = McpEndpoint(url=f"{hosts.redirector_url}/mcp", transport=transport)
        with pytest.raises(Exception) as caught:
            await client.list_tools(endpoint)
        assert type(caught.value).__name__ in ("OutboundUrlForbidden", "McpUnavailable")
    assert hosts.reached == []


async def test_a_webhook_endpoint_redirecting_to_loopback_is_not_followed(
    api: AgentApi, hosts: Hosts
) -> None:
    acme = await api.tenant("Acme")
    created = await api.client.post(
        "/v1/webhooks", json={"url": f"{hosts.redirector_url}/hook"}, headers=acme.headers
    )
    assert created.status_code == 201, created.text
    endpoint_id = created.json()["id"]
    async with api.backends.database.session() as session:
        event = await record_event(
            session=session,
            org_id=acme.org_id,
            type="webhook.test",
            data={"endpoint_id": endpoint_id},
            endpoint_id=endpoint_id,
        )
    [delivery_id] = await dispatch.dispatch_event(api.backends, event.id)
    await attempt_delivery(api.backends, delivery_id, "task-redirect")
    async with api.backends.database.session() as session:
        attempts = (
            await session.scalars(
                select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)
            )
        ).all()
    assert [a.status_code for a in attempts] == [302]  # a failed attempt, not followed
    assert hosts.redirected == ["POST /hook"]
    assert hosts.reached == []


async def test_the_http_tool_following_redirects_refuses_a_hop_to_loopback(
    hosts: Hosts,
) -> None:
    config = {
        "type": "http_request",
        "name": "lookup_order",
        "description": "Look up an order",
        "method": "GET",
        "url": f"{hosts.redirector_url}/orders/{{order_id}}",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "pattern": "^[A-Za-z0-9-]+$"}},
            "required": ["order_id"],
        },
        "follow_redirects": True,
        "timeout_s": 5,
    }
    ctx = ToolContext(
        org_id="org_test",
        agent_id="agt_test",
        conversation_id="cnv_test",
        secrets=EnvSecretProvider(environ={}),
        outbound_allowlist=Allowlist([ALLOWED]),
    )
    box = build_toolbox([config])
    result = await box.execute(ToolCall("c1", "lookup_order", json.dumps({"order_id": "A1"})), ctx)
    assert result.is_error
    assert "request refused" in result.content and "127.0.0.2" in result.content
    assert hosts.redirected == ["GET /orders/A1"]
    assert hosts.reached == []

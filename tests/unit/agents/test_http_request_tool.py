"""The http_request tool against a real local HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from vocalis.adapters.env_secrets import EnvSecretProvider
from vocalis.agents.tools.base import ToolConfigError, ToolContext, build_tool, build_toolbox
from vocalis.core.ssrf import Allowlist
from vocalis.ports.llm import ToolCall

SEEN: list[dict[str, Any]] = []


class _Api(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        SEEN.append(
            {
                "method": self.command,
                "path": self.path,
                "auth": self.headers.get("Authorization"),
                "body": self.rfile.read(length).decode() if length else "",
            }
        )
        if self.path.startswith("/big"):
            body = b"x" * 10_000
        elif self.path.startswith("/missing"):
            self.send_response(404)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        else:
            body = json.dumps({"status": "shipped", "eta": "tomorrow"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    SEEN.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def order_tool(base: str, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "http_request",
        "name": "lookup_order",
        "description": "Look up an order",
        "method": "GET",
        "url": f"{base}/orders/{{order_id}}",
        "parameters": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string", "pattern": "^[A-Za-z0-9/.-]+$"},
                "verbose": {"type": "boolean"},
            },
            "required": ["order_id"],
        },
        "headers": {"Authorization": "Bearer {{secret:crm/token}}"},
        "timeout_s": 5,
        **overrides,
    }


def context(allow: list[str] | None = None) -> ToolContext:
    secrets = EnvSecretProvider(environ={"VOCALIS_SECRET_CRM__TOKEN": "s3cret"})
    return ToolContext(
        org_id="org_test",
        agent_id="agt_test",
        conversation_id="cnv_test",
        secrets=secrets,
        outbound_allowlist=Allowlist(allow if allow is not None else ["127.0.0.1"]),
    )


async def run(config: dict[str, Any], ctx: ToolContext, **arguments: Any) -> Any:
    box = build_toolbox([config])
    return await box.execute(ToolCall("c1", config["name"], json.dumps(arguments)), ctx)


async def test_calls_the_allow_listed_api_with_the_secret_header(api_url: str) -> None:
    result = await run(order_tool(api_url), context(), order_id="A-17", verbose=True)
    assert not result.is_error
    assert json.loads(result.content) == {
        "status": 200,
        "body": {"status": "shipped", "eta": "tomorrow"},
        "truncated": False,
    }
    assert SEEN == [
        {"method": "GET", "path": "/orders/A-17?verbose=true", "auth": "Bearer s3cret", "body": ""}
    ]
    assert "s3cret" not in result.content


async def test_arguments_cannot_escape_the_url_path(api_url: str) -> None:
    await run(order_tool(api_url), context(), order_id="../admin")
    assert SEEN[0]["path"] == "/orders/..%2Fadmin"


async def test_post_sends_the_remaining_arguments_as_json(api_url: str) -> None:
    config = order_tool(api_url, method="POST")
    await run(config, context(), order_id="B1", verbose=False)
    assert (SEEN[0]["method"], json.loads(SEEN[0]["body"])) == ("POST", {"verbose": False})


async def test_is_refused_when_the_host_is_not_allow_listed(api_url: str) -> None:
    result = await run(order_tool(api_url), context(allow=[]), order_id="A-17")
    assert result.is_error
    assert "request refused" in result.content and "loopback" in result.content
    assert SEEN == []


async def test_invalid_arguments_are_reported_to_the_model(api_url: str) -> None:
    result = await run(order_tool(api_url), context(), verbose="yes")
    assert result.is_error
    assert "invalid arguments" in result.content and "order_id" in result.content
    assert SEEN == []


async def test_the_response_is_cut_at_the_size_cap(api_url: str) -> None:
    config = order_tool(api_url, url=f"{api_url}/big/{{order_id}}", max_response_bytes=100)
    result = await run(config, context(), order_id="1")
    data = json.loads(result.content)
    assert data["truncated"] is True and len(data["body"]) == 100


async def test_an_error_status_is_an_error_result(api_url: str) -> None:
    config = order_tool(api_url, url=f"{api_url}/missing/{{order_id}}")
    result = await run(config, context(), order_id="1")
    assert result.is_error and json.loads(result.content)["status"] == 404


async def test_a_missing_secret_is_an_error_without_a_request(api_url: str) -> None:
    config = order_tool(api_url, headers={"X-Key": "{{secret:crm/absent}}"})
    result = await run(config, context(), order_id="1")
    assert result.is_error and "crm/absent" in result.content
    assert SEEN == []


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"url": "http://{host}/x"}, "path and query"),
        ({"url": "ftp://example.com/{order_id}"}, "http(s)"),
        ({"url": "https://example.com/{nope}"}, "not declared"),
        ({"method": "TRACE"}, "method"),
        ({"headers": {"X-Id": "{order_id}"}}, "secrets, not arguments"),
        ({"timeout_s": 600}, "timeout_s"),
        (
            {"parameters": {"type": "object", "properties": {"order_id": {"type": "nonsense"}}}},
            "invalid schema",
        ),
    ],
)
def test_unsafe_or_inconsistent_configurations_are_rejected(
    override: dict[str, Any], message: str
) -> None:
    with pytest.raises(ToolConfigError) as info:
        build_tool(order_tool("https://example.com", **override))
    assert message in info.value.detail

"""MCP client over the official `mcp` SDK: streamable HTTP, SSE, and allow-listed stdio.

Each operation opens one session (`mcp.Client`), does its work and closes it: agents' MCP
servers are remote services called a few times per turn, and a session per call keeps no
state to go stale between turns. HTTP transports get an `httpx2` client whose transport is
the SSRF guard (every request, redirects included, checked and pinned to the checked
address), with the server's headers. The SDK follows redirects only within the server's
origin. Text content is joined and capped; the whole operation is bounded by the timeout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from typing import Any

import httpx2

from vocalis.core.ssrf import Allowlist, OutboundUrlForbidden, Resolver, guarded_client2
from vocalis.ports.mcp import McpCallResult, McpEndpoint, McpToolInfo, McpUnavailable

MAX_TOOL_PAGES = 20


class McpSdkClient:
    """The `McpClient` port over the `mcp` SDK."""

    def __init__(
        self, allowlist: Allowlist | Iterable[str] = (), *, resolver: Resolver | None = None
    ) -> None:
        self.allowlist = Allowlist.of(allowlist)
        self._resolver = resolver

    def _client(self, endpoint: McpEndpoint) -> Any:
        # Imported on first use: the SDK is slow to import and most processes never call it.
        from mcp import Client
        from mcp.client.sse import sse_client
        from mcp.client.stdio import StdioServerParameters, stdio_client
        from mcp.client.streamable_http import streamable_http_client

        if endpoint.transport == "stdio":
            params = StdioServerParameters(
                command=endpoint.command[0], args=list(endpoint.command[1:]), env=dict(endpoint.env)
            )
            return Client(stdio_client(params), mode="legacy")
        timeout = httpx2.Timeout(endpoint.timeout_s)

        def http(
            headers: dict[str, str] | None = None,
            timeout: httpx2.Timeout | None = timeout,
            auth: httpx2.Auth | None = None,
        ) -> httpx2.AsyncClient:
            return guarded_client2(
                self.allowlist,
                resolver=self._resolver,
                headers={**(headers or {}), **endpoint.headers},
                timeout=timeout or endpoint.timeout_s,
            )

        if endpoint.transport == "sse":
            transport = sse_client(
                endpoint.url,
                timeout=endpoint.timeout_s,
                sse_read_timeout=endpoint.timeout_s,
                httpx_client_factory=http,
            )
            return Client(transport, mode="legacy", read_timeout_seconds=endpoint.timeout_s)
        transport = streamable_http_client(endpoint.url, http_client=http())
        return Client(transport, read_timeout_seconds=endpoint.timeout_s)

    async def list_tools(self, endpoint: McpEndpoint) -> list[McpToolInfo]:
        """Every tool of the server (up to `MAX_TOOL_PAGES` pages)."""

        async def run() -> list[McpToolInfo]:
            tools: list[McpToolInfo] = []
            async with self._client(endpoint) as client:
                cursor: str | None = None
                for _ in range(MAX_TOOL_PAGES):
                    page = await client.list_tools(cursor=cursor)
                    tools += [
                        McpToolInfo(t.name, t.description or "", dict(t.input_schema or {}))
                        for t in page.tools
                    ]
                    cursor = page.next_cursor
                    if not cursor:
                        break
            return tools

        return await self._bounded(endpoint, run)

    async def call_tool(
        self,
        endpoint: McpEndpoint,
        name: str,
        arguments: Mapping[str, Any],
        *,
        max_result_bytes: int,
    ) -> McpCallResult:
        """Call one tool; text content joined and cut at `max_result_bytes`."""

        async def run() -> McpCallResult:
            async with self._client(endpoint) as client:
                result = await client.call_tool(name, dict(arguments))
            parts: list[str] = []
            for block in result.content:
                text = getattr(block, "text", None)
                parts.append(text if isinstance(text, str) else block.model_dump_json())
            text = "\n".join(parts)
            if not text and result.structured_content is not None:
                text = json.dumps(result.structured_content, default=str)
            raw = text.encode()
            truncated = len(raw) > max_result_bytes
            if truncated:
                text = raw[:max_result_bytes].decode(errors="ignore")
            structured = None if truncated else result.structured_content
            return McpCallResult(text, structured, bool(result.is_error), truncated)

        return await self._bounded(endpoint, run)

    async def _bounded(self, endpoint: McpEndpoint, run: Any) -> Any:
        try:
            async with asyncio.timeout(endpoint.timeout_s):
                return await run()
        except TimeoutError:
            raise
        except OutboundUrlForbidden:
            raise
        except Exception as exc:
            forbidden = _find(exc, OutboundUrlForbidden)
            if forbidden is not None:
                raise forbidden from None
            detail = _brief(exc)
            raise McpUnavailable(f"The MCP server failed: {detail}") from None


def _find(exc: BaseException, kind: type[OutboundUrlForbidden]) -> OutboundUrlForbidden | None:
    """The first `kind` inside an exception (groups and causes included)."""
    stack: list[BaseException] = [exc]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)
    return None


def _brief(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:300]

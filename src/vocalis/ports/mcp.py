"""MCP client port: list and call the tools of a Model Context Protocol server.

The adapter (`vocalis.adapters.mcp_client`) speaks the protocol with the official `mcp`
SDK over streamable HTTP or SSE (every request through the SSRF guard), or over stdio for
the servers an operator allow-listed. It raises only `McpUnavailable` (the server could not
be reached or answered with a protocol error) and `TimeoutError`; a tool that reports an
error is a result with `is_error`, not an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from vocalis.core.errors import VocalisError, register

MCP_SERVER_UNAVAILABLE = register(
    "mcp_server_unavailable",
    502,
    "MCP server unavailable",
    "The MCP server could not be reached, timed out, or answered with a protocol error.",
    retryable=True,
)

McpTransport = Literal["streamable_http", "sse", "stdio"]


@dataclass(frozen=True)
class McpEndpoint:
    """Where an MCP server is and how to talk to it (`headers` hold decrypted values)."""

    url: str  # http(s) URL, or `stdio:<name>` for an operator-allow-listed command
    transport: McpTransport = "streamable_http"
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 10.0
    command: tuple[str, ...] = ()  # stdio: the command and its arguments
    env: Mapping[str, str] = field(default_factory=dict)  # stdio: its environment

    def __repr__(self) -> str:  # header values are credentials: never in logs or reprs
        return f"McpEndpoint(url={self.url!r}, transport={self.transport!r})"


@dataclass(frozen=True)
class McpToolInfo:
    """A tool the server offers."""

    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class McpCallResult:
    """What a tool call returned: its text (capped), structured content, and error flag."""

    text: str
    structured: Any = None
    is_error: bool = False
    truncated: bool = False


class McpUnavailable(VocalisError):
    """The server could not be reached or broke the protocol."""

    code = MCP_SERVER_UNAVAILABLE


class McpClient(Protocol):
    """Lists and calls an MCP server's tools (a session per operation)."""

    async def list_tools(self, endpoint: McpEndpoint) -> list[McpToolInfo]:
        """The server's tools, every page."""
        ...

    async def call_tool(
        self,
        endpoint: McpEndpoint,
        name: str,
        arguments: Mapping[str, Any],
        *,
        max_result_bytes: int,
    ) -> McpCallResult:
        """Call one tool; its text content is cut at `max_result_bytes`."""
        ...

"""MCP servers as agent tools: an organisation's registered servers and the gateway to them.

`POST /v1/mcp-servers` `{"name", "url", "headers"}` registers a server reached over
streamable HTTP (the default) or SSE (a URL ending in `/sse`, or `"transport": "sse"`);
its URL passes the SSRF guard when saved and on every request, and its header values
(tokens) are stored encrypted with the secret box and never returned — only their names.
A URL `stdio:<name>` names a command the operator allow-listed in `VOCALIS_MCP_STDIO_SERVERS`;
nothing else runs locally.

Agents reference servers in `mcp_servers` (`{"server_id", "allowed_tools"}`). At the start
of each turn the runtime asks the `McpGateway` for their tools (listings reused for
`VOCALIS_MCP_TOOLS_CACHE_S`), filtered by the allow-list, and offers them beside the built-in
tools; a call goes through the official `mcp` SDK client with the timeout and result cap of
the settings. Every operation is an `mcp.*` span, counted in `vocalis_mcp_*`, and logged
with the server id and tool name (never header values or arguments).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from vocalis.agents.telemetry import span
from vocalis.agents.tools.base import TOOL_NAME, Tool, ToolContext, ToolResult, error_result
from vocalis.core.db import Base, Database, Timestamps
from vocalis.core.errors import Conflict, NotFound, RequestError, register
from vocalis.core.ids import new_id
from vocalis.core.lazy import Lazy
from vocalis.core.metrics import MCP_LATENCY, MCP_REQUESTS
from vocalis.core.ssrf import OutboundUrlForbidden, check_url
from vocalis.ports.llm import ToolSpec
from vocalis.ports.mcp import McpClient, McpEndpoint, McpToolInfo, McpTransport, McpUnavailable
from vocalis.ports.secrets import SecretCipher
from vocalis.settings import Settings

log = structlog.get_logger(__name__)

MCP_SERVER_NOT_FOUND = register(
    "mcp_server_not_found",
    422,
    "Unknown MCP server",
    "An agent references an MCP server id that its organisation has not registered.",
)
MCP_STDIO_NOT_ALLOWED = register(
    "mcp_stdio_not_allowed",
    400,
    "stdio MCP server not allow-listed",
    "`stdio:<name>` names no command in the operator's `VOCALIS_MCP_STDIO_SERVERS`.",
)

MAX_SERVERS_PER_ORG = 50
STDIO_PREFIX = "stdio:"
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")]


# --- table --------------------------------------------------------------------------------
class McpServer(Timestamps, Base):
    """An organisation's MCP server."""

    __tablename__ = "mcp_servers"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        Index("ix_mcp_servers_org_id_id", "org_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("mcs"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(2048))
    transport: Mapped[str] = mapped_column(String(20), default="streamable_http")
    headers_encrypted: Mapped[str | None] = mapped_column(
        Text, default=None, comment="Header names and values (JSON), Fernet-encrypted."
    )
    header_names: Mapped[list[Any]] = mapped_column(default=list)


# --- API shapes ---------------------------------------------------------------------------
class McpServerCreate(BaseModel):
    """A new MCP server."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["orders"])
    url: str = Field(
        min_length=1,
        max_length=2048,
        description="The server's streamable-HTTP endpoint (e.g. `…/mcp`), its SSE endpoint "
        "(`…/sse`), or `stdio:<name>` for an operator-allow-listed command.",
        examples=["https://mcp.example.com/mcp"],
    )
    headers: dict[HeaderName, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict,
        max_length=20,
        description="Sent with every request (e.g. `Authorization`); values stored encrypted, "
        "never returned.",
    )
    transport: Literal["streamable_http", "sse"] | None = Field(
        default=None, description="Empty: `sse` for a URL ending in `/sse`, else streamable HTTP."
    )

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", STDIO_PREFIX)):
            raise ValueError("url must be http(s) or stdio:<name>")
        return value


class McpServerOut(BaseModel):
    """An MCP server; header values are never shown."""

    object: Literal["mcp_server"] = "mcp_server"
    id: str
    name: str
    url: str
    transport: str
    header_names: list[str]
    created_at: datetime
    updated_at: datetime


class McpToolOut(BaseModel):
    """One tool of an MCP server, as listed live."""

    object: Literal["mcp_tool"] = "mcp_tool"
    name: str
    description: str
    input_schema: dict[str, Any]


class McpToolList(BaseModel):
    """The tools of an MCP server."""

    object: Literal["list"] = "list"
    server_id: str
    data: list[McpToolOut]


def server_out(row: McpServer) -> McpServerOut:
    """The API view (header names only)."""
    return McpServerOut(
        id=row.id,
        name=row.name,
        url=row.url,
        transport=row.transport,
        header_names=list(row.header_names or []),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# --- service ------------------------------------------------------------------------------
def _transport(url: str, chosen: str | None) -> McpTransport:
    if url.startswith(STDIO_PREFIX):
        return "stdio"
    if chosen == "sse" or (chosen is None and url.split("?", 1)[0].rstrip("/").endswith("/sse")):
        return "sse"
    return "streamable_http"


def _stdio_command(settings: Settings, url: str) -> dict[str, Any]:
    name = url[len(STDIO_PREFIX) :]
    entry = settings.mcp_stdio_servers.get(name)
    if not entry or not entry.get("command"):
        raise RequestError(
            f"{url!r} is not an allow-listed stdio MCP server.", code=MCP_STDIO_NOT_ALLOWED
        )
    return entry


def _org_query(org_id: str) -> Any:
    return select(McpServer).where(McpServer.org_id == org_id)


async def create_server(
    *,
    session: AsyncSession,
    cipher: SecretCipher,
    settings: Settings,
    org_id: str,
    body: McpServerCreate,
) -> McpServer:
    """Register a server (URL checked by the SSRF guard, header values encrypted)."""
    count = len((await session.scalars(_org_query(org_id))).all())
    if count >= MAX_SERVERS_PER_ORG:
        raise Conflict(f"An organisation may register at most {MAX_SERVERS_PER_ORG} MCP servers.")
    transport = _transport(body.url, body.transport)
    if transport == "stdio":
        _stdio_command(settings, body.url)
        url = body.url
    else:
        url = (await check_url(body.url, settings.outbound_allowlist_entries)).url
    row = McpServer(
        org_id=org_id,
        name=body.name,
        url=url,
        transport=transport,
        headers_encrypted=cipher.encrypt(json.dumps(body.headers)) if body.headers else None,
        header_names=sorted(body.headers),
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"An MCP server named {body.name!r} already exists.") from None
    return row


async def get_server(*, session: AsyncSession, org_id: str, server_id: str) -> McpServer:
    """One server of the organisation, or NotFound."""
    row = await session.scalar(_org_query(org_id).where(McpServer.id == server_id))
    if row is None:
        raise NotFound(f"No MCP server {server_id!r}.")
    return row


async def list_servers(
    *, session: AsyncSession, org_id: str, limit: int, after: str | None = None
) -> list[McpServer]:
    """The organisation's servers, newest first."""
    query = _org_query(org_id).order_by(McpServer.id.desc())
    if after:
        query = query.where(McpServer.id < after)
    return list((await session.scalars(query.limit(limit))).all())


async def delete_server(*, session: AsyncSession, org_id: str, server_id: str) -> None:
    """Delete a server; agents that reference it lose its tools from their next turn."""
    row = await get_server(session=session, org_id=org_id, server_id=server_id)
    await session.delete(row)
    await session.flush()


async def check_agent_servers(
    *, session: AsyncSession, org_id: str, server_ids: Sequence[str]
) -> None:
    """Refuse an agent referencing servers its organisation has not registered."""
    for server_id in server_ids:
        if await session.scalar(_org_query(org_id).where(McpServer.id == server_id)) is None:
            raise RequestError(
                f"No MCP server {server_id!r} in this organisation.", code=MCP_SERVER_NOT_FOUND
            )


def endpoint_for(row: McpServer, cipher: SecretCipher, settings: Settings) -> McpEndpoint:
    """How to reach a server now (its header values decrypted)."""
    headers = json.loads(cipher.decrypt(row.headers_encrypted)) if row.headers_encrypted else {}
    if row.transport == "stdio":
        entry = _stdio_command(settings, row.url)
        command = entry["command"]
        return McpEndpoint(
            url=row.url,
            transport="stdio",
            timeout_s=settings.mcp_timeout_s,
            command=tuple(command if isinstance(command, list) else [command]),
            env={str(k): str(v) for k, v in (entry.get("env") or {}).items()},
        )
    transport: McpTransport = "sse" if row.transport == "sse" else "streamable_http"
    return McpEndpoint(
        url=row.url, transport=transport, headers=headers, timeout_s=settings.mcp_timeout_s
    )


# --- the gateway: listing and calling, with metrics, spans and logs --------------------------
@dataclass(frozen=True)
class McpServerUse:
    """An agent's reference to a server, and which of its tools it may call (None = all)."""

    server_id: str
    allowed_tools: tuple[str, ...] | None = None


@dataclass
class McpGateway:
    """Every MCP operation of the process goes through here (one per runtime)."""

    client: McpClient
    database: Database
    cipher: Lazy[SecretCipher]
    settings: Settings
    _listings: dict[tuple[str, str], tuple[float, list[McpToolInfo]]] = field(default_factory=dict)

    async def endpoint(self, org_id: str, server_id: str) -> McpEndpoint | None:
        """The server's endpoint, or None when it is not the organisation's (any more)."""
        async with self.database.session() as session:
            row = await session.scalar(_org_query(org_id).where(McpServer.id == server_id))
            if row is None:
                return None
            return endpoint_for(row, await self.cipher.get(), self.settings)

    async def list_tools(
        self, org_id: str, server_id: str, endpoint: McpEndpoint
    ) -> list[McpToolInfo]:
        """The server's tools, live."""
        with self._operation("list_tools", server_id) as attributes:
            tools = await self.client.list_tools(endpoint)
            attributes["vocalis.mcp.tools"] = len(tools)
        self._listings[(org_id, server_id)] = (time.monotonic(), tools)
        return tools

    async def cached_tools(
        self, org_id: str, server_id: str, endpoint: McpEndpoint
    ) -> list[McpToolInfo]:
        """The server's tools, reusing a listing younger than `mcp_tools_cache_s`."""
        cached = self._listings.get((org_id, server_id))
        if cached and time.monotonic() - cached[0] < self.settings.mcp_tools_cache_s:
            return cached[1]
        return await self.list_tools(org_id, server_id, endpoint)

    async def call(
        self, org_id: str, server_id: str, name: str, arguments: Mapping[str, Any]
    ) -> ToolResult:
        """Call one tool; every failure is an error result the model can read."""
        endpoint = await self.endpoint(org_id, server_id)
        if endpoint is None:
            return error_result(f"the MCP server of {name!r} is no longer registered")
        try:
            with self._operation("call_tool", server_id, tool=name) as attributes:
                result = await self.client.call_tool(
                    endpoint, name, arguments, max_result_bytes=self.settings.mcp_max_result_bytes
                )
                attributes["outcome"] = "tool_error" if result.is_error else "ok"
                attributes["vocalis.mcp.truncated"] = result.truncated
        except TimeoutError:
            return error_result(f"{name} gave no answer within {endpoint.timeout_s:g} s")
        except (McpUnavailable, OutboundUrlForbidden) as exc:
            return error_result(f"{name} failed: {exc.detail}")
        data: dict[str, Any] = {"mcp_server_id": server_id, "truncated": result.truncated}
        if result.structured is not None:
            data["structured"] = result.structured
        content = result.text if not result.is_error else json.dumps({"error": result.text})
        return ToolResult(content=content, data=data, is_error=result.is_error)

    async def agent_tools(
        self, org_id: str, uses: Sequence[McpServerUse], taken: set[str]
    ) -> list[Tool]:
        """The tools an agent's MCP servers offer it, minus names already `taken`."""
        tools: list[Tool] = []
        for use in uses:
            endpoint = await self.endpoint(org_id, use.server_id)
            if endpoint is None:
                log.warning("mcp.server_missing", mcp_server_id=use.server_id)
                continue
            try:
                listed = await self.cached_tools(org_id, use.server_id, endpoint)
            except (TimeoutError, McpUnavailable, OutboundUrlForbidden):
                continue  # counted and logged; the turn goes on without this server's tools
            for info in listed:
                allowed = use.allowed_tools is None or info.name in use.allowed_tools
                if not allowed or info.name in taken or not TOOL_NAME.match(info.name):
                    continue
                taken.add(info.name)
                tools.append(McpTool(self, org_id, use.server_id, _spec(info)))
        return tools

    def _operation(self, operation: str, server_id: str, tool: str | None = None) -> Any:
        return _Operation(operation, server_id, tool)


class _Operation:
    """Span, metrics and a log line around one MCP operation."""

    def __init__(self, operation: str, server_id: str, tool: str | None) -> None:
        self.operation = operation
        self.attributes: dict[str, Any] = {"vocalis.mcp.server_id": server_id}
        if tool:
            self.attributes["vocalis.mcp.tool"] = tool
        self._span: Any = None
        self._started = 0.0

    def __enter__(self) -> dict[str, Any]:
        self._span = span(f"mcp.{self.operation}", self.attributes)
        self._current = self._span.__enter__()
        self._started = time.perf_counter()
        return self.attributes

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        elapsed = time.perf_counter() - self._started
        if exc is None:
            outcome = str(self.attributes.pop("outcome", "ok"))
        elif isinstance(exc, TimeoutError):
            outcome = "timeout"
        elif isinstance(exc, OutboundUrlForbidden):
            outcome = "forbidden"
        else:
            outcome = "unavailable"
        MCP_REQUESTS.labels(self.operation, outcome).inc()
        MCP_LATENCY.labels(self.operation).observe(elapsed)
        self._current.set_attributes(
            {k: v for k, v in self.attributes.items() if v is not None}
            | {"vocalis.mcp.outcome": outcome}
        )
        fields = {
            "mcp_server_id": self.attributes["vocalis.mcp.server_id"],
            "tool": self.attributes.get("vocalis.mcp.tool"),
            "outcome": outcome,
            "duration_ms": round(elapsed * 1000, 1),
        }
        if exc is None:
            log.info(f"mcp.{self.operation}", **fields)
        else:
            log.warning(f"mcp.{self.operation}", **fields, error=type(exc).__name__)
        self._span.__exit__(kind, exc, tb)


def _spec(info: McpToolInfo) -> ToolSpec:
    schema = info.input_schema or {"type": "object", "properties": {}}
    schema = {k: v for k, v in schema.items() if k != "title"}
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return ToolSpec(name=info.name, description=info.description[:1024], parameters=schema)


@dataclass(frozen=True)
class McpTool:
    """A tool of an MCP server, offered to one agent turn."""

    gateway: McpGateway
    org_id: str
    server_id: str
    spec: ToolSpec
    kind: str = "mcp"

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Call the tool on its server."""
        return await self.gateway.call(self.org_id, self.server_id, self.spec.name, arguments)

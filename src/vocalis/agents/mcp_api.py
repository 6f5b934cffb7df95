"""Routes: /v1/mcp-servers — an organisation's MCP servers, and their tools listed live."""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Response

from vocalis.agents import mcp_servers as service
from vocalis.agents.mcp_servers import McpServerCreate, McpServerOut, McpToolList, McpToolOut
from vocalis.agents.runtime import RuntimeDep
from vocalis.core.deps import BackendsDep, SessionDep
from vocalis.core.openapi import error_responses
from vocalis.core.pagination import ListResource, Page, paginate
from vocalis.core.security import Principal, Scoped
from vocalis.core.ssrf import OUTBOUND_URL_FORBIDDEN
from vocalis.ports.mcp import MCP_SERVER_UNAVAILABLE, McpUnavailable

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1", tags=["mcp-servers"])
_404: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such MCP server (or another organisation's)."}
}
Reader = Annotated[Principal, Scoped("agents:read")]
Writer = Annotated[Principal, Scoped("agents:write")]


@router.post(
    "/mcp-servers",
    response_model=McpServerOut,
    status_code=201,
    responses=error_responses(
        OUTBOUND_URL_FORBIDDEN,
        "mcp_stdio_not_allowed",
        status_400="The URL is refused by the SSRF guard, or names a stdio server not "
        "allow-listed.",
    ),
    summary="Register an MCP server (header values stored encrypted, never returned)",
)
async def create_mcp_server(
    body: McpServerCreate, principal: Writer, session: SessionDep, backends: BackendsDep
) -> McpServerOut:
    row = await service.create_server(
        session=session,
        cipher=await backends.secret_box.get(),
        settings=backends.settings,
        org_id=principal.org_id,
        body=body,
    )
    log.info("mcp_server.created", mcp_server_id=row.id, transport=row.transport)
    return service.server_out(row)


@router.get("/mcp-servers", response_model=ListResource[McpServerOut], summary="List MCP servers")
async def list_mcp_servers(
    page: Page, principal: Reader, session: SessionDep
) -> ListResource[McpServerOut]:
    after = str(page.position["id"]) if page.position and "id" in page.position else None
    rows = await service.list_servers(
        session=session, org_id=principal.org_id, limit=page.limit + 1, after=after
    )
    return paginate([service.server_out(r) for r in rows], page.limit, lambda s: {"id": s.id})


@router.get(
    "/mcp-servers/{server_id}", response_model=McpServerOut, responses=_404, summary="An MCP server"
)
async def get_mcp_server(server_id: str, principal: Reader, session: SessionDep) -> McpServerOut:
    row = await service.get_server(session=session, org_id=principal.org_id, server_id=server_id)
    return service.server_out(row)


@router.delete(
    "/mcp-servers/{server_id}",
    status_code=204,
    response_class=Response,
    responses=_404,
    summary="Delete an MCP server",
)
async def delete_mcp_server(server_id: str, principal: Writer, session: SessionDep) -> Response:
    await service.delete_server(session=session, org_id=principal.org_id, server_id=server_id)
    log.info("mcp_server.deleted", mcp_server_id=server_id)
    return Response(status_code=204)


@router.get(
    "/mcp-servers/{server_id}/tools",
    response_model=McpToolList,
    responses={
        **_404,
        502: {"description": f"`{MCP_SERVER_UNAVAILABLE}`: the server could not be listed."},
    },
    summary="The server's tools, listed live",
)
async def list_mcp_server_tools(
    server_id: str,
    principal: Reader,
    session: SessionDep,
    backends: BackendsDep,
    runtime: RuntimeDep,
) -> McpToolList:
    row = await service.get_server(session=session, org_id=principal.org_id, server_id=server_id)
    endpoint = service.endpoint_for(row, await backends.secret_box.get(), backends.settings)
    try:
        tools = await runtime.mcp.list_tools(principal.org_id, server_id, endpoint)
    except TimeoutError:
        raise McpUnavailable(
            f"The MCP server gave no answer within {endpoint.timeout_s:g} s."
        ) from None
    return McpToolList(
        server_id=server_id,
        data=[
            McpToolOut(name=t.name, description=t.description, input_schema=t.input_schema)
            for t in tools
        ],
    )

"""Routes: /v1/agents (CRUD and versions)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from vocalis.agents import service
from vocalis.agents.schemas import AgentCreate, AgentOut, AgentUpdate, AgentVersionOut
from vocalis.core.deps import SessionDep
from vocalis.core.errors import INVALID_CURSOR, RequestError
from vocalis.core.openapi import error_responses
from vocalis.core.pagination import ListResource, Page, paginate
from vocalis.core.security import Principal, Scoped

router = APIRouter(prefix="/v1", tags=["agents"])
MAX_VERSION = 2**31 - 1  # versions are 32-bit integers in the database
_404: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such agent (or another organisation's)."}
}
# What the service checks in a configuration before it stores a version.
_REFERENCES = error_responses(
    "outbound_url_forbidden",
    "knowledge_base_not_found",
    "agent_handoff_not_found",
    "model_provider_not_found",
    "model_not_offered",
    "mcp_server_not_found",
    "agent_runtime_unavailable",
    status_400="A model URL is refused by the SSRF guard.",
    status_422="The configuration names what the organisation lacks, or a runtime not installed.",
)


def _version_position(position: dict[str, Any] | None) -> int | None:
    """The version a versions cursor points at."""
    if not position or "version" not in position:
        return None
    value = position["version"]
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_VERSION:
        raise RequestError("The cursor is malformed.", code=INVALID_CURSOR)
    return value


def _allowlist(request: Request) -> list[str]:
    return list(request.app.state.settings.outbound_allowlist_entries)


@router.post(
    "/agents",
    response_model=AgentOut,
    status_code=201,
    responses=_REFERENCES,
    summary="Create an agent",
)
async def create_agent(
    body: AgentCreate,
    request: Request,
    principal: Annotated[Principal, Scoped("agents:write")],
    session: SessionDep,
) -> AgentOut:
    await service.check_model_urls(body, _allowlist(request))
    await service.check_model_providers(session=session, org_id=principal.org_id, config=body)
    view = await service.create_agent(
        session=session, org_id=principal.org_id, config=body, created_by=principal.key_id
    )
    return view.out()


@router.get("/agents", response_model=ListResource[AgentOut], summary="List agents")
async def list_agents(
    page: Page, principal: Annotated[Principal, Scoped("agents:read")], session: SessionDep
) -> ListResource[AgentOut]:
    after = str(page.position["id"]) if page.position and "id" in page.position else None
    views = await service.list_agents(
        session=session, org_id=principal.org_id, limit=page.limit + 1, after=after
    )
    return paginate([v.out() for v in views], page.limit, lambda a: {"id": a.id})


@router.get("/agents/{agent_id}", response_model=AgentOut, responses=_404, summary="Get an agent")
async def get_agent(
    agent_id: str, principal: Annotated[Principal, Scoped("agents:read")], session: SessionDep
) -> AgentOut:
    view = await service.get_agent(session=session, org_id=principal.org_id, agent_id=agent_id)
    return view.out()


@router.patch(
    "/agents/{agent_id}",
    response_model=AgentOut,
    responses={**_404, **_REFERENCES},
    summary="Change an agent (creates a new version)",
)
async def update_agent(
    agent_id: str,
    body: AgentUpdate,
    request: Request,
    principal: Annotated[Principal, Scoped("agents:write")],
    session: SessionDep,
) -> AgentOut:
    current = await service.get_agent(session=session, org_id=principal.org_id, agent_id=agent_id)
    config = service.apply_update(current.config, body)
    await service.check_model_urls(config, _allowlist(request))
    await service.check_model_providers(
        session=session, org_id=principal.org_id, config=config, previous=current.config
    )
    view = await service.update_agent(
        session=session,
        org_id=principal.org_id,
        agent_id=agent_id,
        config=config,
        created_by=principal.key_id,
    )
    return view.out()


@router.delete("/agents/{agent_id}", status_code=204, responses=_404, summary="Delete an agent")
async def delete_agent(
    agent_id: str, principal: Annotated[Principal, Scoped("agents:write")], session: SessionDep
) -> Response:
    await service.delete_agent(session=session, org_id=principal.org_id, agent_id=agent_id)
    return Response(status_code=204)


@router.get(
    "/agents/{agent_id}/versions",
    response_model=ListResource[AgentVersionOut],
    responses=_404,
    summary="List an agent's versions, newest first",
)
async def list_versions(
    agent_id: str,
    page: Page,
    principal: Annotated[Principal, Scoped("agents:read")],
    session: SessionDep,
) -> ListResource[AgentVersionOut]:
    before = _version_position(page.position)
    versions = await service.list_versions(
        session=session,
        org_id=principal.org_id,
        agent_id=agent_id,
        limit=page.limit + 1,
        before=before,
    )
    return paginate(
        [service.version_out(v) for v in versions], page.limit, lambda v: {"version": v.version}
    )


@router.get(
    "/agents/{agent_id}/versions/{version}",
    response_model=AgentVersionOut,
    responses=_404,
    summary="Get one version of an agent",
)
async def get_version(
    agent_id: str,
    version: Annotated[int, Path(ge=1, le=MAX_VERSION)],
    principal: Annotated[Principal, Scoped("agents:read")],
    session: SessionDep,
) -> AgentVersionOut:
    # A deleted agent is gone from the API, its versions too (they stay for transcripts).
    await service.get_agent(session=session, org_id=principal.org_id, agent_id=agent_id)
    row = await service.get_version(
        session=session, org_id=principal.org_id, agent_id=agent_id, version=version
    )
    return service.version_out(row)

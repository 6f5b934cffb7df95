"""Routes: /v1/org and /v1/api-keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from sqlalchemy import select

from vocalis.core.deps import SessionDep, get_backends
from vocalis.core.errors import FORBIDDEN_ROLE, PermissionDenied
from vocalis.core.openapi import error_responses
from vocalis.core.pagination import ListResource, Page, paginate
from vocalis.core.scopes import ROLE_SCOPES, Role, can_grant
from vocalis.core.security import Principal, Scoped
from vocalis.orgs import service
from vocalis.orgs.models import ApiKey
from vocalis.orgs.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, OrgOut, OrgUpdate

router = APIRouter(prefix="/v1", tags=["organisation"])
_404: dict[int | str, dict[str, Any]] = {
    404: {"description": "Not found (or another organisation's)."}
}


@router.get("/org", response_model=OrgOut, summary="The caller's organisation")
async def get_org(
    principal: Annotated[Principal, Scoped("org:read")], request: Request
) -> dict[str, Any]:
    # One read in one hop, no ORM session (issue 11: the session, its transaction and
    # aiosqlite's thread switches were ~30 % of this request's CPU). The backends come from
    # the request itself, not `BackendsDep`: each dependency FastAPI resolves costs ~13 µs
    # of CPU per request, ~5 % of this one (docs 12, "Hot routes").
    row = await service.read_org(get_backends(request).database, principal.org_id)
    return row._asdict()  # validated once, as `OrgOut`, by the response model


@router.patch("/org", response_model=OrgOut, summary="Change the organisation")
async def update_org(
    body: OrgUpdate, principal: Annotated[Principal, Scoped("org:write")], session: SessionDep
) -> OrgOut:
    org = await service.update_org(
        session=session, org_id=principal.org_id, name=body.name, retention_days=body.retention_days
    )
    return OrgOut.model_validate(org)


@router.post(
    "/api-keys",
    response_model=ApiKeyCreated,
    status_code=201,
    responses=error_responses(
        "forbidden_role", status_403="The new key's role or scopes exceed the caller's."
    ),
    summary="Create an API key",
)
async def create_api_key(
    body: ApiKeyCreate,
    principal: Annotated[Principal, Scoped("api_keys:write")],
    session: SessionDep,
) -> ApiKeyCreated:
    if not can_grant(principal.role, body.role):
        raise PermissionDenied(
            f"A {principal.role.value} key cannot create a {body.role.value} key.",
            code=FORBIDDEN_ROLE,
        )
    # A key never grants more than it holds: requested scopes must be its own, and the
    # default is the new role's scopes narrowed to the caller's.
    if body.scopes is not None:
        beyond = sorted(set(body.scopes) - principal.scopes)
        if beyond:
            raise PermissionDenied(f"This key cannot grant scopes it lacks: {', '.join(beyond)}.")
    scopes = body.scopes or sorted(ROLE_SCOPES[body.role] & principal.scopes)
    issued = await service.create_api_key(
        session=session,
        org_id=principal.org_id,
        name=body.name,
        role=body.role,
        scopes=scopes,
        expires_at=body.expires_at,
        created_by=principal.user_id,
    )
    return ApiKeyCreated(**ApiKeyOut.model_validate(issued.key).model_dump(), key=issued.plaintext)


@router.get("/api-keys", response_model=ListResource[ApiKeyOut], summary="List API keys")
async def list_api_keys(
    page: Page, principal: Annotated[Principal, Scoped("api_keys:read")], session: SessionDep
) -> ListResource[ApiKeyOut]:
    after = str(page.position["id"]) if page.position and "id" in page.position else None
    keys = await service.list_api_keys(
        session=session, org_id=principal.org_id, limit=page.limit + 1, after=after
    )
    return paginate([ApiKeyOut.model_validate(k) for k in keys], page.limit, lambda k: {"id": k.id})


@router.delete(
    "/api-keys/{key_id}",
    response_model=ApiKeyOut,
    responses={
        **_404,
        **error_responses("forbidden_role", status_403="The key's role is above the caller's."),
    },
    summary="Revoke an API key",
)
async def revoke_api_key(
    key_id: str,
    principal: Annotated[Principal, Scoped("api_keys:write")],
    session: SessionDep,
    request: Request,
) -> ApiKeyOut:
    target = await session.scalar(
        select(ApiKey.role).where(ApiKey.id == key_id, ApiKey.org_id == principal.org_id)
    )
    if target is not None and not can_grant(principal.role, Role(target)):
        # An admin never removes (or weakens) an owner: the first-run key included.
        raise PermissionDenied(
            f"A {principal.role.value} key cannot revoke a {target} key.", code=FORBIDDEN_ROLE
        )
    key = await service.revoke_api_key(session=session, org_id=principal.org_id, key_id=key_id)
    await session.commit()
    forget = getattr(request.app.state.api_keys, "forget", None)
    if forget is not None:  # the principal cache: refused here from the next request on
        forget(key_id)
    return ApiKeyOut.model_validate(key)

"""Routes: /v1/model-providers — an organisation's OpenAI-compatible model servers and keys."""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Request, Response

from vocalis.agents import model_providers as service
from vocalis.agents.model_providers import (
    ModelProviderCreate,
    ModelProviderOut,
    ModelProviderUpdate,
)
from vocalis.core.deps import BackendsDep, SessionDep
from vocalis.core.openapi import error_responses
from vocalis.core.pagination import ListResource, Page, paginate
from vocalis.core.security import Principal, Scoped
from vocalis.core.ssrf import OUTBOUND_URL_FORBIDDEN

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1", tags=["model-providers"])
_404: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such model provider (or another organisation's)."}
}
_400 = error_responses(
    OUTBOUND_URL_FORBIDDEN, status_400="The base URL is refused by the SSRF guard."
)
Reader = Annotated[Principal, Scoped("agents:read")]
Writer = Annotated[Principal, Scoped("agents:write")]


def _allowlist(request: Request) -> list[str]:
    return list(request.app.state.settings.outbound_allowlist_entries)


@router.post(
    "/model-providers",
    response_model=ModelProviderOut,
    status_code=201,
    responses=_400,
    summary="Register a model provider (its API key is stored encrypted, never returned)",
)
async def create_model_provider(
    body: ModelProviderCreate,
    request: Request,
    principal: Writer,
    session: SessionDep,
    backends: BackendsDep,
) -> ModelProviderOut:
    row = await service.create_provider(
        session=session,
        cipher=await backends.secret_box.get(),
        org_id=principal.org_id,
        body=body,
        allowlist=_allowlist(request),
    )
    log.info("model_provider.created", provider_id=row.id, has_api_key=body.api_key is not None)
    return service.provider_out(row)


@router.get(
    "/model-providers",
    response_model=ListResource[ModelProviderOut],
    summary="List model providers",
)
async def list_model_providers(
    page: Page, principal: Reader, session: SessionDep
) -> ListResource[ModelProviderOut]:
    after = str(page.position["id"]) if page.position and "id" in page.position else None
    rows = await service.list_providers(
        session=session, org_id=principal.org_id, limit=page.limit + 1, after=after
    )
    return paginate([service.provider_out(r) for r in rows], page.limit, lambda p: {"id": p.id})


@router.get(
    "/model-providers/{provider_id}",
    response_model=ModelProviderOut,
    responses=_404,
    summary="A model provider",
)
async def get_model_provider(
    provider_id: str, principal: Reader, session: SessionDep
) -> ModelProviderOut:
    row = await service.get_provider(
        session=session, org_id=principal.org_id, provider_id=provider_id
    )
    return service.provider_out(row)


@router.patch(
    "/model-providers/{provider_id}",
    response_model=ModelProviderOut,
    responses={**_404, **_400},
    summary="Change a model provider (a new key replaces the old one at once)",
)
async def update_model_provider(
    provider_id: str,
    body: ModelProviderUpdate,
    request: Request,
    principal: Writer,
    session: SessionDep,
    backends: BackendsDep,
) -> ModelProviderOut:
    row = await service.update_provider(
        session=session,
        cipher=await backends.secret_box.get(),
        org_id=principal.org_id,
        provider_id=provider_id,
        body=body,
        allowlist=_allowlist(request),
    )
    log.info(
        "model_provider.updated", provider_id=row.id, key_changed="api_key" in body.model_fields_set
    )
    return service.provider_out(row)


@router.delete(
    "/model-providers/{provider_id}",
    status_code=204,
    response_class=Response,
    responses=_404,
    summary="Delete a model provider",
)
async def delete_model_provider(
    provider_id: str, principal: Writer, session: SessionDep
) -> Response:
    await service.delete_provider(session=session, org_id=principal.org_id, provider_id=provider_id)
    log.info("model_provider.deleted", provider_id=provider_id)
    return Response(status_code=204)

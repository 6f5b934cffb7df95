"""Routes: /v1/webhooks — endpoints, delivery history, replay and test events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Response

from vocalis.core.deps import BackendsDep, SessionDep
from vocalis.core.openapi import error_responses
from vocalis.core.pagination import ListResource, Page, created_before, paginate
from vocalis.core.security import Principal, Scoped
from vocalis.core.ssrf import OUTBOUND_URL_FORBIDDEN
from vocalis.webhooks import service
from vocalis.webhooks.models import WebhookAttempt, WebhookDelivery
from vocalis.webhooks.schemas import (
    AttemptOut,
    DeliveryOut,
    TestEventOut,
    WebhookCreate,
    WebhookOut,
    WebhookUpdate,
    WebhookWithSecret,
)

router = APIRouter(prefix="/v1", tags=["webhooks"])
_404: dict[int | str, dict[str, Any]] = {
    404: {"description": "Not found (or another organisation's)."}
}
_400 = error_responses(OUTBOUND_URL_FORBIDDEN, status_400="The URL is refused by the SSRF guard.")
Reader = Annotated[Principal, Scoped("webhooks:read")]
Writer = Annotated[Principal, Scoped("webhooks:write")]


def _before(page: Page) -> tuple[datetime, str] | None:
    return created_before(page.position)


def _position(item: Any) -> dict[str, str]:
    return {"c": item.created_at.isoformat(), "id": item.id}


def _delivery_out(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        status=delivery.status,
        attempts=[AttemptOut.model_validate(a) for a in attempts],
        next_attempt_at=delivery.next_attempt_at,
        delivered_at=delivery.delivered_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
    )


@router.post(
    "/webhooks",
    response_model=WebhookWithSecret,
    status_code=201,
    responses=_400,
    summary="Register a webhook endpoint",
)
async def create_webhook(
    body: WebhookCreate, principal: Writer, session: SessionDep, backends: BackendsDep
) -> WebhookWithSecret:
    endpoint, secret = await service.create_endpoint(
        session=session,
        backends=backends,
        org_id=principal.org_id,
        url=body.url,
        description=body.description,
        event_types=body.event_types,
        enabled=body.enabled,
    )
    return WebhookWithSecret(**WebhookOut.model_validate(endpoint).model_dump(), secret=secret)


@router.get("/webhooks", response_model=ListResource[WebhookOut], summary="List webhook endpoints")
async def list_webhooks(
    page: Page, principal: Reader, session: SessionDep
) -> ListResource[WebhookOut]:
    endpoints = await service.list_endpoints(
        session=session, org_id=principal.org_id, limit=page.limit + 1, before=_before(page)
    )
    return paginate([WebhookOut.model_validate(e) for e in endpoints], page.limit, _position)


@router.get(
    "/webhooks/{webhook_id}",
    response_model=WebhookOut,
    responses=_404,
    summary="A webhook endpoint",
)
async def get_webhook(webhook_id: str, principal: Reader, session: SessionDep) -> WebhookOut:
    endpoint = await service.get_endpoint(
        session=session, org_id=principal.org_id, endpoint_id=webhook_id
    )
    return WebhookOut.model_validate(endpoint)


@router.patch(
    "/webhooks/{webhook_id}",
    response_model=WebhookOut,
    responses={**_404, **_400},
    summary="Change a webhook endpoint",
)
async def update_webhook(
    webhook_id: str,
    body: WebhookUpdate,
    principal: Writer,
    session: SessionDep,
    backends: BackendsDep,
) -> WebhookOut:
    endpoint = await service.update_endpoint(
        session=session,
        settings=backends.settings,
        org_id=principal.org_id,
        endpoint_id=webhook_id,
        url=body.url,
        description=body.description,
        event_types=body.event_types,
        enabled=body.enabled,
    )
    return WebhookOut.model_validate(endpoint)


@router.delete(
    "/webhooks/{webhook_id}",
    status_code=204,
    response_class=Response,
    responses=_404,
    summary="Delete a webhook endpoint and its delivery history",
)
async def delete_webhook(webhook_id: str, principal: Writer, session: SessionDep) -> Response:
    await service.delete_endpoint(session=session, org_id=principal.org_id, endpoint_id=webhook_id)
    return Response(status_code=204)


@router.post(
    "/webhooks/{webhook_id}/rotate-secret",
    response_model=WebhookWithSecret,
    responses=_404,
    summary="Replace the signing secret (shown once)",
)
async def rotate_webhook_secret(
    webhook_id: str, principal: Writer, session: SessionDep, backends: BackendsDep
) -> WebhookWithSecret:
    endpoint, secret = await service.rotate_secret(
        session=session, backends=backends, org_id=principal.org_id, endpoint_id=webhook_id
    )
    return WebhookWithSecret(**WebhookOut.model_validate(endpoint).model_dump(), secret=secret)


@router.post(
    "/webhooks/{webhook_id}/test",
    response_model=TestEventOut,
    status_code=202,
    responses=_404,
    summary="Send a `webhook.test` event to this endpoint",
)
async def test_webhook(webhook_id: str, principal: Writer, session: SessionDep) -> TestEventOut:
    event = await service.send_test_event(
        session=session, org_id=principal.org_id, endpoint_id=webhook_id
    )
    return TestEventOut(id=event.id, type=event.type, created_at=event.created_at)


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=ListResource[DeliveryOut],
    responses=_404,
    summary="Delivery history of an endpoint, newest first",
)
async def list_deliveries(
    webhook_id: str, page: Page, principal: Reader, session: SessionDep
) -> ListResource[DeliveryOut]:
    rows = await service.list_deliveries(
        session=session,
        org_id=principal.org_id,
        endpoint_id=webhook_id,
        limit=page.limit + 1,
        before=_before(page),
    )
    return paginate([_delivery_out(d, a) for d, a in rows], page.limit, _position)


@router.post(
    "/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
    response_model=DeliveryOut,
    status_code=202,
    responses=_404,
    summary="Send a delivery again now (same `webhook-id`)",
)
async def replay_delivery(
    webhook_id: str,
    delivery_id: str,
    principal: Writer,
    session: SessionDep,
    backends: BackendsDep,
) -> DeliveryOut:
    delivery = await service.replay_delivery(
        session=session,
        settings=backends.settings,
        org_id=principal.org_id,
        endpoint_id=webhook_id,
        delivery_id=delivery_id,
    )
    attempts = await service.attempts_of(session=session, delivery_id=delivery.id)
    return _delivery_out(delivery, attempts)

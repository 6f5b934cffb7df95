"""Webhook endpoints and deliveries: the logic behind `/v1/webhooks`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from vocalis.core.backends import Backends
from vocalis.core.db import utcnow
from vocalis.core.errors import Conflict, NotFound
from vocalis.core.ssrf import check_url
from vocalis.events.models import OutboxEvent
from vocalis.events.outbox import record_event
from vocalis.events.registry import WEBHOOK_TEST
from vocalis.settings import Settings
from vocalis.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from vocalis.webhooks.signing import generate_secret
from vocalis.workers import publish
from vocalis.workers.deadletters import on_replay
from vocalis.workers.models import DeadLetter

DELIVER_TASK = "vocalis.webhooks.deliver"


async def check_destination(settings: Settings, url: str) -> str:
    """The URL if the SSRF guard lets it through (raises `OutboundUrlForbidden`)."""
    target = await check_url(url, settings.outbound_allowlist_entries)
    return target.url


async def create_endpoint(
    *,
    session: AsyncSession,
    backends: Backends,
    org_id: str,
    url: str,
    description: str,
    event_types: list[str],
    enabled: bool,
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it with its new plaintext secret."""
    settings = backends.settings
    count = await session.scalar(
        select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.org_id == org_id)
    )
    if (count or 0) >= settings.webhook_max_endpoints_per_org:
        raise Conflict(
            f"An organisation may have at most {settings.webhook_max_endpoints_per_org} "
            "webhook endpoints."
        )
    checked = await check_destination(settings, url)
    secret = generate_secret()
    endpoint = WebhookEndpoint(
        org_id=org_id,
        url=checked,
        description=description,
        event_types=event_types,
        enabled=enabled,
        secret_encrypted=(await backends.secret_box.get()).encrypt(secret),
    )
    session.add(endpoint)
    await session.flush()
    return endpoint, secret


async def get_endpoint(*, session: AsyncSession, org_id: str, endpoint_id: str) -> WebhookEndpoint:
    """One endpoint of the organisation, or NotFound."""
    endpoint = await session.scalar(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.org_id == org_id
        )
    )
    if endpoint is None:
        raise NotFound(f"No webhook endpoint {endpoint_id}.")
    return endpoint


async def list_endpoints(
    *, session: AsyncSession, org_id: str, limit: int, before: tuple[datetime, str] | None
) -> Sequence[WebhookEndpoint]:
    """The organisation's endpoints, newest first."""
    query = select(WebhookEndpoint).where(WebhookEndpoint.org_id == org_id)
    if before is not None:
        query = query.where(tuple_(WebhookEndpoint.created_at, WebhookEndpoint.id) < before)
    query = query.order_by(WebhookEndpoint.created_at.desc(), WebhookEndpoint.id.desc())
    return (await session.scalars(query.limit(limit))).all()


async def update_endpoint(
    *,
    session: AsyncSession,
    settings: Settings,
    org_id: str,
    endpoint_id: str,
    url: str | None,
    description: str | None,
    event_types: list[str] | None,
    enabled: bool | None,
) -> WebhookEndpoint:
    """Change an endpoint; a new URL passes the SSRF guard, re-enabling clears failures."""
    endpoint = await get_endpoint(session=session, org_id=org_id, endpoint_id=endpoint_id)
    if url is not None:
        endpoint.url = await check_destination(settings, url)
    if description is not None:
        endpoint.description = description
    if event_types is not None:
        endpoint.event_types = event_types
    if enabled is not None and enabled != endpoint.enabled:
        endpoint.enabled = enabled
        if enabled:
            endpoint.consecutive_failures = 0
            endpoint.failing_since = None
            endpoint.disabled_at = None
            endpoint.disabled_reason = None
        else:
            endpoint.disabled_at = utcnow()
            endpoint.disabled_reason = "disabled through the API"
    endpoint.updated_at = utcnow()
    await session.flush()
    return endpoint


async def delete_endpoint(*, session: AsyncSession, org_id: str, endpoint_id: str) -> None:
    """Delete an endpoint with its delivery history."""
    endpoint = await get_endpoint(session=session, org_id=org_id, endpoint_id=endpoint_id)
    await session.delete(endpoint)


async def rotate_secret(
    *, session: AsyncSession, backends: Backends, org_id: str, endpoint_id: str
) -> tuple[WebhookEndpoint, str]:
    """Give an endpoint a new secret; the old one stops working at once."""
    endpoint = await get_endpoint(session=session, org_id=org_id, endpoint_id=endpoint_id)
    secret = generate_secret()
    endpoint.secret_encrypted = (await backends.secret_box.get()).encrypt(secret)
    endpoint.updated_at = utcnow()
    return endpoint, secret


async def send_test_event(*, session: AsyncSession, org_id: str, endpoint_id: str) -> OutboxEvent:
    """Queue a `webhook.test` event for this endpoint alone."""
    endpoint = await get_endpoint(session=session, org_id=org_id, endpoint_id=endpoint_id)
    if not endpoint.enabled:
        raise Conflict("The endpoint is disabled; enable it before sending a test event.")
    return await record_event(
        session=session,
        org_id=org_id,
        type=WEBHOOK_TEST.name,
        data={"endpoint_id": endpoint.id},
        endpoint_id=endpoint.id,
    )


async def list_deliveries(
    *,
    session: AsyncSession,
    org_id: str,
    endpoint_id: str,
    limit: int,
    before: tuple[datetime, str] | None,
) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    """An endpoint's deliveries, newest first, each with its attempts in order."""
    await get_endpoint(session=session, org_id=org_id, endpoint_id=endpoint_id)
    query = select(WebhookDelivery).where(
        WebhookDelivery.org_id == org_id, WebhookDelivery.endpoint_id == endpoint_id
    )
    if before is not None:
        query = query.where(tuple_(WebhookDelivery.created_at, WebhookDelivery.id) < before)
    query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
    deliveries = list((await session.scalars(query.limit(limit))).all())
    attempts: dict[str, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        rows = await session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookAttempt.number)
        )
        for attempt in rows.all():
            attempts[attempt.delivery_id].append(attempt)
    return [(d, attempts[d.id]) for d in deliveries]


async def get_delivery(
    *, session: AsyncSession, org_id: str, endpoint_id: str, delivery_id: str
) -> WebhookDelivery:
    """One delivery of the endpoint, or NotFound."""
    delivery = await session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.org_id == org_id,
        )
    )
    if delivery is None:
        raise NotFound(f"No delivery {delivery_id} for endpoint {endpoint_id}.")
    return delivery


async def attempts_of(*, session: AsyncSession, delivery_id: str) -> list[WebhookAttempt]:
    """A delivery's attempts in order."""
    rows = await session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == delivery_id)
        .order_by(WebhookAttempt.number)
    )
    return list(rows.all())


def restart(delivery: WebhookDelivery) -> None:
    """Make a delivery due now, with its full retry schedule ahead of it."""
    now = utcnow()
    delivery.status = DeliveryStatus.PENDING
    delivery.retries_in_run = 0
    delivery.next_attempt_at = now
    delivery.enqueued_at = now


async def replay_delivery(
    *, session: AsyncSession, settings: Settings, org_id: str, endpoint_id: str, delivery_id: str
) -> WebhookDelivery:
    """Send a delivery again now (same `webhook-id`), whatever its state."""
    endpoint = await get_endpoint(session=session, org_id=org_id, endpoint_id=endpoint_id)
    if not endpoint.enabled:
        raise Conflict("The endpoint is disabled; enable it before replaying deliveries.")
    delivery = await get_delivery(
        session=session, org_id=org_id, endpoint_id=endpoint_id, delivery_id=delivery_id
    )
    restart(delivery)
    await session.commit()  # the worker must see the reset when the message arrives
    if await publish.enqueue(settings, DELIVER_TASK, [delivery.id]) is None:
        delivery.enqueued_at = None  # the sweep sends it once the broker is back
    return delivery


@on_replay(DELIVER_TASK)
async def _prepare_dead_delivery_replay(session: AsyncSession, letter: DeadLetter) -> None:
    """Replaying a dead-lettered delivery restarts it (if it is still failed)."""
    delivery_id = str(letter.args[0]) if letter.args else ""
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise NotFound(f"The delivery {delivery_id} no longer exists.")
    if delivery.status == DeliveryStatus.FAILED:
        restart(delivery)

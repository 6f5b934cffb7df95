"""One delivery attempt at a time, each recorded; endpoints that keep failing are disabled."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import select

from tests.api.conftest import Api
from tests.webhooks.receiver import Receiver
from vocalis.core.backends import Backends
from vocalis.core.redis_keys import WEBHOOK_DELIVERY_LEASE
from vocalis.events.outbox import record_event
from vocalis.webhooks import dispatch
from vocalis.webhooks.delivery import Next, attempt_delivery
from vocalis.webhooks.models import (
    AttemptStatus,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from vocalis.wiring import secret_cipher, webhook_client


async def _delivery(api: Api, receiver: Receiver, path: str) -> tuple[str, str]:
    """An endpoint at `path` and one dispatched test event for it: (endpoint, delivery)."""
    tenant = await api.tenant()
    created = await api.client.post(
        "/v1/webhooks", json={"url": receiver.url + path}, headers=tenant.headers
    )
    endpoint: dict[str, Any] = created.json()
    receiver.secret(path, endpoint["secret"])
    async with api.backends.database.session() as session:
        event = await record_event(
            session=session,
            org_id=tenant.org_id,
            type="webhook.test",
            data={"endpoint_id": endpoint["id"]},
            endpoint_id=endpoint["id"],
        )
    [delivery_id] = await dispatch.dispatch_event(api.backends, event.id)
    return endpoint["id"], delivery_id


async def _state(api: Api, delivery_id: str) -> tuple[WebhookDelivery, list[WebhookAttempt]]:
    async with api.backends.database.session() as session:
        delivery = await session.get(WebhookDelivery, delivery_id)
        attempts = (
            await session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id == delivery_id)
                .order_by(WebhookAttempt.number)
            )
        ).all()
    assert delivery is not None
    return delivery, list(attempts)


async def test_a_redelivered_message_after_success_sends_nothing(
    sqlite_wh_api: Api, receiver: Receiver
) -> None:
    _, delivery_id = await _delivery(sqlite_wh_api, receiver, "/once")
    first = await attempt_delivery(sqlite_wh_api.backends, delivery_id, "task-1")
    again = await attempt_delivery(sqlite_wh_api.backends, delivery_id, "task-1")
    assert first.next is Next.NOTHING and again.next is Next.NOTHING
    assert len(receiver.requests("/once")) == 1
    delivery, attempts = await _state(sqlite_wh_api, delivery_id)
    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert len(attempts) == 1


async def test_an_attempt_left_in_progress_by_a_dead_worker_is_marked_interrupted(
    sqlite_wh_api: Api, receiver: Receiver
) -> None:
    _, delivery_id = await _delivery(sqlite_wh_api, receiver, "/crash")
    async with sqlite_wh_api.backends.database.session() as session:
        delivery = await session.get(WebhookDelivery, delivery_id)
        assert delivery is not None
        delivery.attempts = 1
        session.add(
            WebhookAttempt(
                org_id=delivery.org_id, delivery_id=delivery_id, number=1, task_id="dead"
            )
        )
    await attempt_delivery(sqlite_wh_api.backends, delivery_id, "task-2")
    _, attempts = await _state(sqlite_wh_api, delivery_id)
    assert [a.status for a in attempts] == [AttemptStatus.INTERRUPTED, AttemptStatus.SUCCEEDED]
    assert attempts[0].error and "interrupted" in attempts[0].error


async def test_a_second_sender_waits_while_the_lease_is_held(
    sqlite_wh_api: Api, receiver: Receiver
) -> None:
    _, delivery_id = await _delivery(sqlite_wh_api, receiver, "/leased")
    lease = WEBHOOK_DELIVERY_LEASE.format(delivery_id=delivery_id)
    await sqlite_wh_api.backends.redis.set(lease, b"other-task", ex=30)
    report = await attempt_delivery(sqlite_wh_api.backends, delivery_id, "task-3")
    assert report.next is Next.RUN_LATER
    assert 1 <= report.wait_s <= 30
    assert receiver.requests("/leased") == []


async def test_every_attempt_records_status_latency_and_a_truncated_body(
    sqlite_wh_api: Api, receiver: Receiver
) -> None:
    receiver.answer("/big", 500, body_size=10_000)
    _, delivery_id = await _delivery(sqlite_wh_api, receiver, "/big")
    report = await attempt_delivery(sqlite_wh_api.backends, delivery_id, "task-4")
    assert report.next is Next.RUN_LATER
    delivery, [attempt] = await _state(sqlite_wh_api, delivery_id)
    assert delivery.status == DeliveryStatus.RETRYING
    assert delivery.retries_in_run == 1
    assert attempt.status_code == 500
    assert attempt.latency_ms is not None and attempt.latency_ms >= 0
    assert attempt.response_body is not None and len(attempt.response_body) == 2048


async def test_a_410_gone_disables_the_endpoint_and_fails_the_delivery(
    sqlite_wh_api: Api, receiver: Receiver
) -> None:
    receiver.answer("/gone", then=410)
    endpoint_id, delivery_id = await _delivery(sqlite_wh_api, receiver, "/gone")
    report = await attempt_delivery(sqlite_wh_api.backends, delivery_id, "task-5")
    assert report.next is Next.DEAD
    async with sqlite_wh_api.backends.database.session() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
    assert endpoint is not None and endpoint.enabled is False
    assert endpoint.disabled_reason and "410" in endpoint.disabled_reason


async def test_an_endpoint_is_disabled_after_the_configured_run_of_failures(
    sqlite_wh_api: Api, receiver: Receiver
) -> None:
    receiver.answer("/failing", then=500)
    endpoint_id, first = await _delivery(sqlite_wh_api, receiver, "/failing")
    backends = _with(sqlite_wh_api.backends, webhook_disable_after_failures=2)
    assert (await attempt_delivery(backends, first, "t1")).next is Next.RUN_LATER
    async with sqlite_wh_api.backends.database.session() as session:
        delivery = await session.get(WebhookDelivery, first)
        assert delivery is not None
        delivery.next_attempt_at = None  # due now
    report = await attempt_delivery(backends, first, "t2")
    assert report.next is Next.DEAD
    async with sqlite_wh_api.backends.database.session() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
    assert endpoint is not None and not endpoint.enabled
    assert endpoint.consecutive_failures == 2


async def test_the_ssrf_guard_is_applied_again_at_delivery_time(
    sqlite_wh_api: Api, receiver: Receiver
) -> None:
    _, delivery_id = await _delivery(sqlite_wh_api, receiver, "/moved")
    # The allow-list no longer covers the address (as if DNS now pointed somewhere private).
    backends = _with(sqlite_wh_api.backends, outbound_allowlist="")
    report = await attempt_delivery(backends, delivery_id, "task-6")
    assert report.next is Next.DEAD  # refused for good, not retried
    _, [attempt] = await _state(sqlite_wh_api, delivery_id)
    assert attempt.error and attempt.error.startswith("forbidden")
    assert receiver.requests("/moved") == []


async def test_a_delivery_for_a_disabled_endpoint_is_skipped(
    sqlite_wh_api: Api, receiver: Receiver
) -> None:
    endpoint_id, delivery_id = await _delivery(sqlite_wh_api, receiver, "/off")
    async with sqlite_wh_api.backends.database.session() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        endpoint.enabled = False
    await attempt_delivery(sqlite_wh_api.backends, delivery_id, "task-7")
    delivery, attempts = await _state(sqlite_wh_api, delivery_id)
    assert delivery.status == DeliveryStatus.SKIPPED
    assert attempts == []


def _with(backends: Backends, **changes: Any) -> Backends:
    """The same backends under changed settings (fresh HTTP client and secret box)."""
    settings = backends.settings.model_copy(update=changes)
    return dataclasses.replace(
        backends,
        settings=settings,
        webhook_http=webhook_client(settings),
        secret_box=secret_cipher(settings, backends.secrets),
    )

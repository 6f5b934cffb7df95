"""Beat jobs: retention, the stuck-document sweeper hook, endpoint auto-disable, history pruning."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from tests.api.conftest import Api
from vocalis.core import object_keys
from vocalis.core.backends import Backends
from vocalis.events.models import OutboxEvent
from vocalis.events.outbox import record_event
from vocalis.orgs import service as orgs
from vocalis.webhooks import delivery, dispatch
from vocalis.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from vocalis.workers import maintenance

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


async def _conversation(api: Api, org_id: str, conversation_id: str, age_days: int) -> None:
    created = _iso(NOW - timedelta(days=age_days))
    documents = api.backends.documents
    await documents.insert("conversations", org_id, {"_id": conversation_id, "created_at": created})
    await documents.insert(
        "messages",
        org_id,
        {
            "_id": f"msg_{conversation_id}",
            "conversation_id": conversation_id,
            "created_at": created,
        },
    )
    key = object_keys.recording(org_id, conversation_id, 0, "user")
    await api.backends.objects.put(key, b"RIFF....", content_type="audio/wav")


async def _retention(api: Api, org_id: str, days: int | None) -> None:
    async with api.backends.database.session() as session:
        await orgs.update_org(session=session, org_id=org_id, name=None, retention_days=days)


async def test_retention_deletes_conversations_messages_and_recordings_past_the_cutoff(
    admin_api: Api,
) -> None:
    tenant = await admin_api.tenant()
    await _retention(admin_api, tenant.org_id, 30)
    await _conversation(admin_api, tenant.org_id, "cnv_old", age_days=45)
    await _conversation(admin_api, tenant.org_id, "cnv_new", age_days=5)
    report = await maintenance.apply_retention(admin_api.backends, now=NOW)
    documents = admin_api.backends.documents
    assert await documents.get("conversations", tenant.org_id, "cnv_old") is None
    assert await documents.get("conversations", tenant.org_id, "cnv_new") is not None
    assert await documents.count("messages", tenant.org_id) == 1
    objects = admin_api.backends.objects
    assert not await objects.exists(object_keys.recording(tenant.org_id, "cnv_old", 0, "user"))
    assert await objects.exists(object_keys.recording(tenant.org_id, "cnv_new", 0, "user"))
    assert (report.conversations, report.messages, report.recordings) == (1, 1, 1)


async def test_organisations_without_a_retention_period_keep_everything(admin_api: Api) -> None:
    keeper = await admin_api.tenant("Keeper")
    await _conversation(admin_api, keeper.org_id, "cnv_ancient", age_days=4000)
    await maintenance.apply_retention(admin_api.backends, now=NOW)
    assert await admin_api.backends.documents.get("conversations", keeper.org_id, "cnv_ancient")


@pytest.fixture
def sweeper_calls() -> Iterator[list[datetime]]:
    calls: list[datetime] = []

    async def sweeper(backends: Backends, cutoff: datetime) -> int:
        calls.append(cutoff)
        return 2

    maintenance.register_stuck_document_sweeper(sweeper)
    yield calls
    maintenance.STUCK_DOCUMENT_SWEEPERS.remove(sweeper)


async def test_the_stuck_document_sweeper_calls_registered_sweepers_with_the_cutoff(
    admin_api: Api, sweeper_calls: list[datetime]
) -> None:
    handled = await maintenance.sweep_stuck_documents(admin_api.backends, now=NOW)
    assert handled == 2
    expected = NOW - timedelta(seconds=admin_api.settings.stuck_document_after_s)
    assert sweeper_calls == [expected]


async def test_the_beat_job_disables_endpoints_past_the_failure_limit(admin_api: Api) -> None:
    tenant = await admin_api.tenant()
    created = await admin_api.client.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/h"}, headers=tenant.headers
    )
    endpoint_id = created.json()["id"]
    limit = admin_api.settings.webhook_disable_after_failures
    async with admin_api.backends.database.session() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        endpoint.consecutive_failures = limit
    async with admin_api.backends.database.session() as session:
        disabled = await delivery.disable_failing_endpoints(
            session=session, settings=admin_api.settings
        )
    assert disabled == 1
    fetched = await admin_api.client.get(f"/v1/webhooks/{endpoint_id}", headers=tenant.headers)
    assert fetched.json()["enabled"] is False
    assert f"{limit} consecutive" in fetched.json()["disabled_reason"]


async def test_old_webhook_history_is_pruned_unless_a_delivery_is_still_open(
    admin_api: Api,
) -> None:
    tenant = await admin_api.tenant()
    await admin_api.client.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/h"}, headers=tenant.headers
    )
    ids = []
    for _ in range(2):
        async with admin_api.backends.database.session() as session:
            event = await record_event(
                session=session,
                org_id=tenant.org_id,
                type="webhook.test",
                data={"endpoint_id": "whe_x"},
            )
        await dispatch.dispatch_event(admin_api.backends, event.id)
        ids.append(event.id)
    done, still_open = ids
    async with admin_api.backends.database.session() as session:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.event_id == done)
            .values(status=DeliveryStatus.SUCCEEDED)
        )
    later = datetime.now(UTC) + timedelta(days=admin_api.settings.webhook_history_days + 1)
    assert await dispatch.prune_history(admin_api.backends, now=later) == 1
    async with admin_api.backends.database.session() as session:
        left = (await session.scalars(select(OutboxEvent.id))).all()
        deliveries = (await session.scalars(select(WebhookDelivery.event_id))).all()
    assert list(left) == [still_open]
    assert list(deliveries) == [still_open]  # the pruned event's deliveries went with it

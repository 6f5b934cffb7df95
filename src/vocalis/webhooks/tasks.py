"""Celery tasks of webhooks: dispatch an event, deliver one delivery, the periodic jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from vocalis.core.backends import Backends
from vocalis.webhooks import delivery, dispatch
from vocalis.webhooks.models import WebhookDelivery
from vocalis.workers.base import TaskContext, vocalis_task
from vocalis.workers.maintenance import register_history_pruner


class DeliveryFailed(Exception):
    """A delivery failed for good (not transient: it goes to the dead-letter store)."""

    def __init__(self, reason: str, attempts: int, first_failed_at: datetime | None) -> None:
        super().__init__(reason)
        self.attempts = attempts  # HTTP attempts, not task runs: what the dead letter shows
        self.first_failed_at = first_failed_at


async def _delivery_org(backends: Backends, args: tuple[Any, ...], _: dict[str, Any]) -> str | None:
    async with backends.database.session() as session:
        found = await session.get(WebhookDelivery, str(args[0])) if args else None
        return found.org_id if found else None


@vocalis_task(
    dispatch.DELIVER_TASK,
    org_of=_delivery_org,
    idempotency_note="only an open delivery is sent, by one holder of its Redis lease; "
    "receivers deduplicate on `webhook-id`",
    retry_note="failed HTTP attempts follow `VOCALIS_WEBHOOK_RETRY_SCHEDULE`, then dead-letter",
)
async def deliver(ctx: TaskContext, delivery_id: str) -> str:
    """Make the next attempt of a webhook delivery (signed POST, recorded)."""
    report = await delivery.attempt_delivery(ctx.backends, delivery_id, ctx.task_id)
    if report.next is delivery.Next.RUN_LATER:
        await dispatch.enqueue_deliveries(ctx.backends, [delivery_id], countdown=report.wait_s)
    elif report.next is delivery.Next.DEAD:
        raise DeliveryFailed(report.reason, report.attempts, report.first_failed_at)
    return report.reason


@vocalis_task(
    "vocalis.webhooks.dispatch_event",
    idempotency_note="an event is dispatched once (`dispatched_at`, unique delivery per endpoint)",
)
async def dispatch_event(ctx: TaskContext, event_id: str) -> int:
    """Create and enqueue the deliveries of one outbox event."""
    return len(await dispatch.dispatch_event(ctx.backends, event_id))


@vocalis_task(
    "vocalis.webhooks.dispatch_events",
    idempotency_note="each event is dispatched once (`dispatched_at`, unique deliveries)",
)
async def dispatch_events(ctx: TaskContext, event_ids: list[str]) -> int:
    """Create and enqueue the deliveries of the outbox events one transaction recorded."""
    return len(await dispatch.dispatch_events(ctx.backends, event_ids))


@vocalis_task("vocalis.maintenance.sweep_outbox")
async def sweep_outbox(ctx: TaskContext) -> dict[str, int]:
    """Dispatch events left undispatched and re-enqueue due deliveries without a message."""
    report = await dispatch.sweep(ctx.backends)
    return {"events": report.events_dispatched, "deliveries": report.deliveries_enqueued}


@vocalis_task("vocalis.maintenance.disable_failing_endpoints")
async def disable_failing_endpoints(ctx: TaskContext) -> int:
    """Disable endpoints past the consecutive-failure limit."""
    async with ctx.backends.database.session() as session:
        return await delivery.disable_failing_endpoints(session=session, settings=ctx.settings)


register_history_pruner("webhook_events")(dispatch.prune_history)

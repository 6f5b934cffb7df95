"""Sending one delivery attempt: sign, POST through the SSRF guard, record what happened.

At least once, and never two senders at a time: a short Redis lease (the worker's task id)
guards each delivery, a delivery that is no longer open is left alone (a redelivered
message after success sends nothing), and the attempt row is committed *before* the
request goes out, so a worker killed mid-request leaves an `in_progress` attempt that the
next worker marks `interrupted` before it sends again with the same `webhook-id` —
receivers deduplicate on it.

The retry schedule lives in the delivery row (`next_attempt_at`), not only in a queue
message: delays up to the broker's visibility timeout are scheduled as message
countdowns; longer ones (hours) are enqueued by the outbox sweep when due, so a
six-hour wait never sits in the broker as an unacknowledged message.
"""

from __future__ import annotations

import enum
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import structlog
from opentelemetry import propagate, trace
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vocalis import __version__
from vocalis.core.backends import Backends
from vocalis.core.db import utcnow
from vocalis.core.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_ENDPOINTS_DISABLED, WEBHOOK_LATENCY
from vocalis.core.redis_keys import WEBHOOK_DELIVERY_LEASE
from vocalis.core.ssrf import OutboundUrlForbidden
from vocalis.core.tracing import tracer
from vocalis.events.models import OutboxEvent
from vocalis.events.registry import envelope
from vocalis.settings import Settings
from vocalis.webhooks.models import (
    AttemptStatus,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from vocalis.webhooks.signing import signature_headers
from vocalis.workers.retry import RetryPolicy, parse_schedule

log = structlog.get_logger(__name__)

MAX_RESPONSE_BYTES = 2048
MAX_ERROR_CHARS = 1000
EARLY_SLACK_S = 1.0
_RELEASE_LEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


class Next(enum.Enum):
    """What the task does after an attempt."""

    NOTHING = "nothing"  # succeeded, already closed, or skipped
    RUN_LATER = "run_later"  # publish the delivery again after `wait_s`
    DEAD = "dead"  # failed for good: dead-letter it


@dataclass(frozen=True)
class AttemptReport:
    """The outcome of `attempt_delivery` for the task."""

    next: Next
    wait_s: float = 0.0
    reason: str = ""
    attempts: int = 0
    first_failed_at: datetime | None = None


@dataclass(frozen=True)
class HttpResult:
    """What one request produced."""

    outcome: str  # success, http_error, network_error, timeout, forbidden
    status_code: int | None
    latency_ms: int
    body: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        """Whether the receiver accepted the event."""
        return self.outcome == "success"

    @property
    def permanent(self) -> bool:
        """Whether retrying cannot help (refused by the guard, or 410 Gone)."""
        return self.outcome == "forbidden" or self.status_code == 410


def webhook_policy(settings: Settings) -> RetryPolicy:
    """The delivery retry schedule from the settings."""
    return RetryPolicy.from_schedule(parse_schedule(settings.webhook_retry_schedule))


def lease_seconds(settings: Settings) -> int:
    """How long one sender holds a delivery."""
    return math.ceil(settings.webhook_timeout_s) + 2


def max_countdown_s(settings: Settings) -> float:
    """Longest retry delay scheduled as a broker countdown (longer ones go to the sweep)."""
    return settings.task_visibility_timeout_s / 2


async def attempt_delivery(backends: Backends, delivery_id: str, task_id: str) -> AttemptReport:
    """Make the next attempt of a delivery if it is due and nobody else is making it."""
    settings = backends.settings
    lease_key = WEBHOOK_DELIVERY_LEASE.format(delivery_id=delivery_id)
    lease_s = lease_seconds(settings)
    if not await backends.redis.set(lease_key, task_id.encode(), ex=lease_s, nx=True):
        ttl = await backends.redis.ttl(lease_key)
        return AttemptReport(Next.RUN_LATER, float(max(ttl, 1)), "another worker holds it")
    try:
        return await _attempt_under_lease(backends, delivery_id, task_id)
    finally:
        await backends.redis.eval(_RELEASE_LEASE, 1, lease_key, task_id.encode())


async def _attempt_under_lease(backends: Backends, delivery_id: str, task_id: str) -> AttemptReport:
    settings = backends.settings
    async with backends.database.session() as session:
        delivery = await session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.status not in DeliveryStatus.OPEN:
            return AttemptReport(Next.NOTHING, reason="not open")
        now = utcnow()
        if delivery.next_attempt_at and delivery.next_attempt_at > now + timedelta(
            seconds=EARLY_SLACK_S
        ):
            wait = (delivery.next_attempt_at - now).total_seconds()
            return AttemptReport(Next.RUN_LATER, wait, "not due yet")
        endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id)
        event = await session.get(OutboxEvent, delivery.event_id)
        if endpoint is None or event is None or not endpoint.enabled:
            delivery.status = DeliveryStatus.SKIPPED
            delivery.last_error = "endpoint disabled or deleted"
            delivery.enqueued_at = None
            return AttemptReport(Next.NOTHING, reason="endpoint disabled")
        await _mark_interrupted(session, delivery_id)
        delivery.attempts += 1
        attempt = WebhookAttempt(
            org_id=delivery.org_id,
            delivery_id=delivery.id,
            number=delivery.attempts,
            task_id=task_id,
            started_at=now,
        )
        session.add(attempt)
        url, encrypted = endpoint.url, endpoint.secret_encrypted
        body = json.dumps(
            envelope(event.type, event.created_at, event.data), separators=(",", ":")
        ).encode()
        msg_id, event_type, org_id = event.id, event.type, event.org_id
    # Committed: the attempt is on record before anything leaves the process.
    secret = (await backends.secret_box.get()).decrypt(encrypted)
    with tracer().start_as_current_span(
        "webhook.deliver",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "vocalis.org_id": org_id,
            "webhook.endpoint_id": endpoint.id,
            "webhook.delivery_id": delivery_id,
            "webhook.event_type": event_type,
            "webhook.attempt": attempt.number,
            "http.request.method": "POST",
        },
    ) as span:
        result = await send(backends, url, secret, msg_id, body)
        if result.status_code is not None:
            span.set_attribute("http.response.status_code", result.status_code)
        if not result.ok:
            span.set_status(trace.StatusCode.ERROR, result.error or result.outcome)
    WEBHOOK_ATTEMPTS.labels(outcome=result.outcome).inc()
    WEBHOOK_LATENCY.labels(outcome=result.outcome).observe(result.latency_ms / 1000)
    return await _record(backends, settings, delivery_id, attempt.id, result)


async def _mark_interrupted(session: AsyncSession, delivery_id: str) -> None:
    await session.execute(
        update(WebhookAttempt)
        .where(
            WebhookAttempt.delivery_id == delivery_id,
            WebhookAttempt.status == AttemptStatus.IN_PROGRESS,
        )
        .values(
            status=AttemptStatus.INTERRUPTED,
            error="interrupted: the worker stopped before recording an answer",
            finished_at=utcnow(),
        )
    )


async def send(backends: Backends, url: str, secret: str, msg_id: str, body: bytes) -> HttpResult:
    """POST one signed request; never raises for what the receiver or network does."""
    headers = {
        "content-type": "application/json",
        "user-agent": f"Vocalis-Webhooks/{__version__}",
        **signature_headers(secret, msg_id, int(time.time()), body),
    }
    propagate.inject(headers)  # receivers with tracing continue our trace
    started = time.perf_counter()

    def elapsed() -> int:
        return round((time.perf_counter() - started) * 1000)

    try:
        client = await backends.webhook_http.get()
        async with client.stream("POST", url, content=body, headers=headers) as response:
            received = bytearray()
            async for chunk in response.aiter_raw():
                received += chunk
                if len(received) >= MAX_RESPONSE_BYTES:
                    break
            text = bytes(received[:MAX_RESPONSE_BYTES]).decode("utf-8", errors="replace")
            ok = 200 <= response.status_code < 300
            return HttpResult(
                "success" if ok else "http_error",
                response.status_code,
                elapsed(),
                text,
                None if ok else f"HTTP {response.status_code}",
            )
    except OutboundUrlForbidden as exc:
        return HttpResult("forbidden", None, elapsed(), None, f"forbidden: {exc.detail}")
    except httpx.TimeoutException as exc:
        return HttpResult("timeout", None, elapsed(), None, f"timeout: {type(exc).__name__}")
    except httpx.HTTPError as exc:
        return HttpResult(
            "network_error", None, elapsed(), None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        )


async def _record(
    backends: Backends, settings: Settings, delivery_id: str, attempt_id: str, result: HttpResult
) -> AttemptReport:
    now = utcnow()
    async with backends.database.session() as session:
        attempt = await session.get(WebhookAttempt, attempt_id)
        delivery = await session.get(WebhookDelivery, delivery_id)
        if attempt is None or delivery is None:  # the endpoint was deleted meanwhile
            return AttemptReport(Next.NOTHING, reason="deleted")
        endpoint = await session.scalar(
            select(WebhookEndpoint).where(WebhookEndpoint.id == delivery.endpoint_id)
        )
        attempt.status = AttemptStatus.SUCCEEDED if result.ok else AttemptStatus.FAILED
        attempt.status_code = result.status_code
        attempt.latency_ms = result.latency_ms
        attempt.response_body = result.body
        attempt.error = (result.error or None) and result.error[:MAX_ERROR_CHARS]
        attempt.finished_at = now
        delivery.last_status_code = result.status_code
        delivery.last_error = attempt.error
        delivery.enqueued_at = None
        if result.ok:
            delivery.status = DeliveryStatus.SUCCEEDED
            delivery.delivered_at = now
            delivery.next_attempt_at = None
            if endpoint is not None:
                endpoint.consecutive_failures = 0
                endpoint.failing_since = None
                endpoint.last_success_at = now
            return AttemptReport(Next.NOTHING, reason="delivered")
        if endpoint is not None:
            note_failure(endpoint, settings, gone=result.status_code == 410)
        policy = webhook_policy(settings)
        endpoint_off = endpoint is None or not endpoint.enabled
        if result.permanent or endpoint_off or not policy.can_retry(delivery.retries_in_run):
            delivery.status = DeliveryStatus.FAILED
            delivery.next_attempt_at = None
            why = result.error or result.outcome
            if endpoint_off:
                why += " (endpoint disabled)"
            elif not result.permanent:
                why += f" (after {delivery.retries_in_run + 1} attempts)"
            first_failed = await session.scalar(
                select(func.min(WebhookAttempt.started_at)).where(
                    WebhookAttempt.delivery_id == delivery_id,
                    WebhookAttempt.status != AttemptStatus.SUCCEEDED,
                )
            )
            return AttemptReport(
                Next.DEAD,
                reason=why,
                attempts=delivery.attempts,
                first_failed_at=first_failed or now,
            )
        wait = policy.delay(delivery.retries_in_run)
        delivery.retries_in_run += 1
        delivery.status = DeliveryStatus.RETRYING
        delivery.next_attempt_at = now + timedelta(seconds=wait)
        if wait <= max_countdown_s(settings):
            delivery.enqueued_at = delivery.next_attempt_at
            return AttemptReport(Next.RUN_LATER, wait, result.error or result.outcome)
        # Too long for a broker countdown: the sweep enqueues it when due.
        return AttemptReport(Next.NOTHING, reason="retry left to the sweep")


def should_disable(endpoint: WebhookEndpoint, settings: Settings) -> bool:
    """Whether an endpoint has failed too often in a row to keep trying."""
    limit = settings.webhook_disable_after_failures
    return endpoint.enabled and limit > 0 and endpoint.consecutive_failures >= limit


def disable(endpoint: WebhookEndpoint, reason: str) -> None:
    """Turn an endpoint off and say why."""
    endpoint.enabled = False
    endpoint.disabled_at = utcnow()
    endpoint.disabled_reason = reason[:500]
    WEBHOOK_ENDPOINTS_DISABLED.inc()
    log.warning("webhook_endpoint_disabled", endpoint_id=endpoint.id, reason=reason)


def note_failure(endpoint: WebhookEndpoint, settings: Settings, *, gone: bool = False) -> None:
    """Count a failed attempt against the endpoint, disabling it past the limit."""
    endpoint.consecutive_failures += 1
    if endpoint.failing_since is None:
        endpoint.failing_since = utcnow()
    if gone:
        disable(endpoint, "the receiver answered 410 Gone")
    elif should_disable(endpoint, settings):
        disable(endpoint, f"{endpoint.consecutive_failures} consecutive failed attempts")


async def disable_failing_endpoints(*, session: AsyncSession, settings: Settings) -> int:
    """Disable every endpoint past the consecutive-failure limit (the beat backstop)."""
    rows = await session.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.enabled.is_(True),
            WebhookEndpoint.consecutive_failures >= settings.webhook_disable_after_failures,
        )
    )
    disabled = 0
    for endpoint in rows.all():
        if should_disable(endpoint, settings):
            disable(endpoint, f"{endpoint.consecutive_failures} consecutive failed attempts")
            disabled += 1
    return disabled

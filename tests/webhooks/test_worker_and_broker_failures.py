"""At-least-once delivery survives a killed worker and a stopped broker."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import select

from tests.fixtures.polling import eventually
from tests.webhooks.conftest import Stack
from tests.webhooks.test_delivery_with_worker import _endpoint, _send_test, _settled
from vocalis.events.models import OutboxEvent


async def test_a_worker_killed_mid_delivery_is_redelivered_and_the_effect_happens_once(
    stack: Stack,
) -> None:
    tenant = await stack.tenant("Killed")
    plan = stack.receiver.hold_first("/held")
    endpoint = await _endpoint(stack, tenant, "/held")
    event_id = await _send_test(stack, tenant, endpoint["id"])
    assert await asyncio.to_thread(plan.held.wait, 30), "the first request never arrived"

    stack.worker.kill()  # SIGKILL while the worker waits for the receiver's answer
    stack.receiver.release("/held")  # the receiver applies the event; nobody reads the reply
    await asyncio.to_thread(stack.worker.start)

    delivery = await _settled(stack, tenant, endpoint["id"], "succeeded")
    assert [a["status"] for a in delivery["attempts"]] == ["interrupted", "succeeded"]
    requests = stack.receiver.requests("/held")
    assert [r.msg_id for r in requests] == [event_id, event_id]  # redelivered, same id
    assert stack.receiver.effects[event_id] == 1  # applied once; the repeat was a duplicate
    assert stack.receiver.duplicates == 1
    assert not stack.receiver.unverified()


async def test_with_the_broker_stopped_the_api_accepts_the_event_and_delivers_it_later(
    stack: Stack,
) -> None:
    tenant = await stack.tenant("Outage")
    endpoint = await _endpoint(stack, tenant, "/outage")
    stack.broker.stop()
    try:
        started = time.monotonic()
        event_id = await _send_test(stack, tenant, endpoint["id"])
        assert time.monotonic() - started < 5  # no request waits on the dead broker
        await asyncio.sleep(1.5)
        async with stack.api.backends.database.session() as session:
            event = await session.scalar(select(OutboxEvent).where(OutboxEvent.id == event_id))
        assert event is not None and event.dispatched_at is None  # kept, waiting
        assert stack.receiver.requests("/outage") == []
    finally:
        stack.broker.start()

    async def delivered() -> list[object]:
        # kombu's Redis transport can die of a race while it reconnects under load
        # ("'NoneType' object has no attribute 'hostname'", celery/kombu#582): the worker
        # exits, and what runs it (Kubernetes, systemd or Docker's restart policy; `vocalis
        # run` stops as a whole so that its own runner restarts it) starts it again, as here. The event waits in the outbox either way: that is what this test is about.
        process = stack.worker.process
        if process is not None and process.poll() is not None:
            stack.worker.process = None
            await asyncio.to_thread(stack.worker.start)
        return list(stack.receiver.requests("/outage"))

    await eventually(delivered, bool, timeout=90, what="the delivery after the broker came back")
    delivery = await _settled(stack, tenant, endpoint["id"], "succeeded")
    assert delivery["event_id"] == event_id
    assert [r.msg_id for r in stack.receiver.requests("/outage")] == [event_id]
    assert not stack.receiver.unverified()

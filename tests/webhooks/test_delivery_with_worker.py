"""Webhook delivery through a real Celery worker on a real Redis broker.

The receiver checks every request's signature with the Standard Webhooks reference
library; each test ends by asserting none failed.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any

import httpx

from tests.api.conftest import Tenant
from tests.fixtures.polling import eventually
from tests.webhooks.conftest import Stack


async def _endpoint(stack: Stack, tenant: Tenant, path: str, **body: Any) -> dict[str, Any]:
    created = await stack.api.client.post(
        "/v1/webhooks", json={"url": stack.receiver.url + path, **body}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    endpoint: dict[str, Any] = created.json()
    stack.receiver.secret(path, endpoint["secret"])
    return endpoint


async def _send_test(stack: Stack, tenant: Tenant, endpoint_id: str, **headers: str) -> str:
    sent = await stack.api.client.post(
        f"/v1/webhooks/{endpoint_id}/test", headers={**tenant.headers, **headers}
    )
    assert sent.status_code == 202, sent.text
    return str(sent.json()["id"])


async def _deliveries(stack: Stack, tenant: Tenant, endpoint_id: str) -> list[dict[str, Any]]:
    listed = await stack.api.client.get(
        f"/v1/webhooks/{endpoint_id}/deliveries", headers=tenant.headers
    )
    assert listed.status_code == 200, listed.text
    data: list[dict[str, Any]] = listed.json()["data"]
    return data


async def _settled(stack: Stack, tenant: Tenant, endpoint_id: str, status: str) -> dict[str, Any]:
    deliveries = await eventually(
        lambda: _deliveries(stack, tenant, endpoint_id),
        lambda ds: bool(ds) and ds[0]["status"] == status,
        what=f"a {status} delivery",
    )
    return deliveries[0]


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


async def test_a_test_event_is_delivered_signed_in_the_versioned_envelope(stack: Stack) -> None:
    tenant = await stack.tenant("Signed")
    endpoint = await _endpoint(stack, tenant, "/signed")
    event_id = await _send_test(stack, tenant, endpoint["id"])
    delivery = await _settled(stack, tenant, endpoint["id"], "succeeded")
    [request] = stack.receiver.requests("/signed")
    assert request.verified, request.verify_error
    assert request.msg_id == event_id == delivery["event_id"]
    payload = request.payload
    assert payload["type"] == "webhook.test"
    assert payload["api_version"]
    assert payload["data"]["endpoint_id"] == endpoint["id"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", payload["timestamp"])


async def test_a_receiver_failing_twice_then_succeeding_gets_three_recorded_attempts(
    stack: Stack,
) -> None:
    tenant = await stack.tenant("Flaky")
    stack.receiver.answer("/flaky", 500, 502)
    endpoint = await _endpoint(stack, tenant, "/flaky")
    await _send_test(stack, tenant, endpoint["id"])
    delivery = await _settled(stack, tenant, endpoint["id"], "succeeded")
    attempts = delivery["attempts"]
    assert [a["number"] for a in attempts] == [1, 2, 3]
    assert [a["status_code"] for a in attempts] == [500, 502, 200]
    assert [a["status"] for a in attempts] == ["failed", "failed", "succeeded"]
    assert all(a["latency_ms"] is not None and a["finished_at"] for a in attempts)
    assert '"status": 500' in attempts[0]["response_body"]
    requests = stack.receiver.requests("/flaky")
    assert len(requests) == 3
    assert len({r.msg_id for r in requests}) == 1  # one webhook-id across retries
    assert not stack.receiver.unverified()


async def test_an_always_failing_receiver_produces_a_dead_letter_and_a_replay_delivers_once(
    stack: Stack,
) -> None:
    tenant = await stack.tenant("Down")
    stack.receiver.answer("/down", then=503)
    endpoint = await _endpoint(stack, tenant, "/down")
    await _send_test(stack, tenant, endpoint["id"])
    failed = await _settled(stack, tenant, endpoint["id"], "failed")
    assert len(failed["attempts"]) == 3  # the first try and the two scheduled retries

    async def letters() -> list[dict[str, Any]]:
        listed = await stack.api.client.get(
            "/v1/admin/dead-letters?status=open&task_name=vocalis.webhooks.deliver",
            headers=tenant.headers,
        )
        return [d for d in listed.json()["data"] if d["args"] == [failed["id"]]]

    [letter] = await eventually(letters, bool, what="the dead letter")
    assert letter["org_id"] == tenant.org_id
    assert letter["transient"] is False
    assert letter["attempts"] == 3
    assert letter["first_failed_at"] < letter["last_failed_at"]
    assert "503" in letter["error"]
    metrics = (await httpx.AsyncClient().get(stack.metrics_url)).text
    assert _metric(metrics, "vocalis_dead_letters_total", task="vocalis.webhooks.deliver") >= 1

    stack.receiver.answer("/down", then=200)  # the receiver is fixed
    replayed = await stack.api.client.post(
        f"/v1/admin/dead-letters/{letter['id']}/replay", headers=tenant.headers
    )
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["status"] == "replayed"
    delivered = await _settled(stack, tenant, endpoint["id"], "succeeded")
    assert len(delivered["attempts"]) == 4
    await asyncio.sleep(2.5)  # give any duplicate (sweep, redelivery) the time to show up
    accepted = [r for r in stack.receiver.requests("/down") if r.status == 200]
    assert len(accepted) == 1
    assert not stack.receiver.unverified()


async def test_trace_context_travels_from_the_api_request_to_the_webhook(stack: Stack) -> None:
    tenant = await stack.tenant("Traced")
    endpoint = await _endpoint(stack, tenant, "/traced")
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    await _send_test(stack, tenant, endpoint["id"], traceparent=traceparent)
    await _settled(stack, tenant, endpoint["id"], "succeeded")
    [request] = stack.receiver.requests("/traced")
    assert request.headers["traceparent"].split("-")[1] == trace_id


async def test_worker_metrics_count_tasks_by_outcome(stack: Stack) -> None:
    tenant = await stack.tenant("Counted")
    endpoint = await _endpoint(stack, tenant, "/counted")
    await _send_test(stack, tenant, endpoint["id"])
    await _settled(stack, tenant, endpoint["id"], "succeeded")
    text = (await httpx.AsyncClient().get(stack.metrics_url)).text
    assert (
        _metric(text, "vocalis_task_total", task="vocalis.webhooks.deliver", outcome="success") >= 1
    )
    assert "vocalis_task_duration_seconds_bucket" in text
    assert 'vocalis_queue_depth{queue="webhooks"}' in text
    assert _metric(text, "vocalis_webhook_delivery_attempts_total", outcome="success") >= 1


async def test_an_ended_conversation_is_analysed_and_conversation_analyzed_is_delivered(
    stack: Stack,
) -> None:
    tenant = await stack.tenant("Analysed")
    client, headers = stack.api.client, tenant.headers
    endpoint = await _endpoint(stack, tenant, "/analyzed", event_types=["conversation.analyzed"])
    agent = await client.post(
        "/v1/agents",
        json={
            "name": "Support",
            "instructions": "Help with routers and modems.",
            "knowledge_base_ids": [],
            "analysis_plan": {
                "structured_data_schema": {
                    "type": "object",
                    "properties": {"product": {"type": "string", "enum": ["router", "modem"]}},
                }
            },
        },
        headers=headers,
    )
    assert agent.status_code == 201, agent.text
    conversation = await client.post(
        f"/v1/agents/{agent.json()['id']}/conversations", headers=headers
    )
    assert conversation.status_code == 201, conversation.text
    conversation_id = conversation.json()["id"]
    said = await client.post(
        f"/v1/conversations/{conversation_id}/messages",
        json={"content": "My modem keeps dropping the line, thanks for helping", "stream": False},
        headers=headers,
    )
    assert said.status_code == 200, said.text
    ended = await client.post(f"/v1/conversations/{conversation_id}/end", headers=headers)
    assert ended.status_code == 200, ended.text

    await eventually(
        lambda: asyncio.sleep(0, stack.receiver.requests("/analyzed")),
        bool,
        timeout=60,
        what="the conversation.analyzed webhook",
    )
    [request] = stack.receiver.requests("/analyzed")
    assert request.verified, request.verify_error
    payload = request.payload
    assert payload["type"] == "conversation.analyzed"
    data = payload["data"]
    assert data["conversation_id"] == conversation_id
    assert data["outcome"] in ("resolved", "escalated", "abandoned")
    assert data["sentiment"] == "positive"
    assert data["method"] == "heuristic"  # the agent has no model configured
    assert data["fields"] == {"product": "modem"}
    stored = await stack.api.backends.documents.get("conversations", tenant.org_id, conversation_id)
    assert stored is not None and stored["analysis"]["summary"] == data["summary"]
    await _settled(stack, tenant, endpoint["id"], "succeeded")


async def test_replaying_a_delivery_sends_it_again_with_the_same_webhook_id(stack: Stack) -> None:
    tenant = await stack.tenant("Replayed")
    endpoint = await _endpoint(stack, tenant, "/replayed")
    event_id = await _send_test(stack, tenant, endpoint["id"])
    delivery = await _settled(stack, tenant, endpoint["id"], "succeeded")
    replayed = await stack.api.client.post(
        f"/v1/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/replay",
        headers=tenant.headers,
    )
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["status"] == "pending"
    await eventually(
        lambda: asyncio.sleep(0, stack.receiver.requests("/replayed")),
        lambda requests: len(requests) == 2,
        what="the replayed request",
    )
    assert [r.msg_id for r in stack.receiver.requests("/replayed")] == [event_id, event_id]
    again = await _settled(stack, tenant, endpoint["id"], "succeeded")
    assert len(again["attempts"]) == 2

"""`/v1/phone-numbers`: org-scoped, credentials write-only and encrypted at rest, audited;
and the per-organisation cap on concurrent calls. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from tests.api.conftest import Api, Tenant
from vocalis.core.scopes import Role
from vocalis.telephony.errors import CallLimitReached
from vocalis.telephony.models import PhoneNumber
from vocalis.telephony.slots import active_calls, claim_slot, release_slot

TWILIO = {"account_sid": "AC" + "0" * 32, "auth_token": "super-secret-auth-token"}


async def agent(api: Api, tenant: Tenant, name: str = "Line") -> str:
    created = await api.client.post(
        "/v1/agents", json={"name": name, "instructions": "Help."}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def number(api: Api, tenant: Tenant, for_agent: str, **fields: Any) -> Any:
    body = {
        "number": "+15550100001",
        "provider": "twilio",
        "agent_id": for_agent,
        "credentials": TWILIO,
    }
    return await api.client.post("/v1/phone-numbers", json=body | fields, headers=tenant.headers)


async def test_a_number_is_registered_without_ever_showing_its_credentials(api: Api) -> None:
    tenant = await api.tenant()
    agent_id = await agent(api, tenant)
    with capture_logs() as logs:
        created = await number(api, tenant, agent_id)
    assert created.status_code == 201, created.text
    body = created.json()
    assert {body["number"], body["provider"], body["agent_id"]} == {
        "+15550100001",
        "twilio",
        agent_id,
    }
    assert "credentials" not in body and TWILIO["auth_token"] not in created.text
    listed = await api.client.get("/v1/phone-numbers", headers=tenant.headers)
    assert [n["id"] for n in listed.json()["data"]] == [body["id"]]
    assert TWILIO["auth_token"] not in listed.text
    async with api.backends.database.session() as session:
        row = await session.scalar(select(PhoneNumber).where(PhoneNumber.id == body["id"]))
    assert row is not None and TWILIO["auth_token"] not in row.credentials_encrypted
    audit = [e for e in logs if e.get("event") == "audit"]
    assert audit and audit[0]["action"] == "phone_number.created"
    assert audit[0]["resource_id"] == body["id"]


async def test_a_number_is_re_pointed_at_another_agent_and_deleted(api: Api) -> None:
    tenant = await api.tenant()
    first, second = await agent(api, tenant, "First"), await agent(api, tenant, "Second")
    created = (await number(api, tenant, first)).json()
    path = f"/v1/phone-numbers/{created['id']}"
    patched = await api.client.patch(path, json={"agent_id": second}, headers=tenant.headers)
    assert patched.status_code == 200 and patched.json()["agent_id"] == second
    assert (await api.client.get(path, headers=tenant.headers)).json()["agent_id"] == second
    assert (await api.client.delete(path, headers=tenant.headers)).status_code == 204
    assert (await api.client.get(path, headers=tenant.headers)).status_code == 404


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"number": "5550100001"}, 422),  # not E.164
        ({"provider": "telnyx"}, 422),  # Twilio credentials for Telnyx
        ({"credentials": {"account_sid": "AC1"}}, 422),  # no auth token
        ({"agent_id": "agt_missing"}, 404),
    ],
)
async def test_invalid_numbers_are_refused(api: Api, fields: dict[str, Any], status: int) -> None:
    tenant = await api.tenant()
    response = await number(api, tenant, await agent(api, tenant), **fields)
    assert response.status_code == status, response.text


async def test_a_number_is_registered_once(api: Api) -> None:
    tenant, other = await api.tenant(), await api.tenant("Other")
    assert (await number(api, tenant, await agent(api, tenant))).status_code == 201
    again = await number(api, other, await agent(api, other))
    assert again.status_code == 409
    assert again.json()["code"] == "telephony_number_taken"


async def test_numbers_are_private_to_their_organisation_and_viewers_only_read(
    api: Api,
) -> None:
    tenant, other = await api.tenant(), await api.tenant("Other")
    created = (await number(api, tenant, await agent(api, tenant))).json()
    path = f"/v1/phone-numbers/{created['id']}"
    assert (await api.client.get(path, headers=other.headers)).status_code == 404
    assert (await api.client.delete(path, headers=other.headers)).status_code == 404
    viewer = await api.key_for(tenant, Role.VIEWER)
    assert (await api.client.get(path, headers=viewer.headers)).status_code == 200
    assert (await api.client.delete(path, headers=viewer.headers)).status_code == 403
    calls = await api.client.post(
        "/v1/calls",
        json={"phone_number_id": created["id"], "to": "+15550109999"},
        headers=viewer.headers,
    )
    assert calls.status_code == 403


async def test_an_organisation_holds_at_most_its_cap_of_calls(api: Api) -> None:
    backends, org = api.backends, "org_cap"
    cap = backends.settings.telephony_max_concurrent_calls_per_org
    for n in range(cap):
        await claim_slot(backends, org_id=org, slot_id=f"slot{n}", enforce=True)
    with pytest.raises(CallLimitReached):
        await claim_slot(backends, org_id=org, slot_id="one-too-many", enforce=True)
    assert await active_calls(backends, org_id=org) == cap
    await release_slot(backends, org_id=org, slot_id="slot0")
    await claim_slot(backends, org_id=org, slot_id="now-it-fits", enforce=True)
    for n in range(1, cap):
        await release_slot(backends, org_id=org, slot_id=f"slot{n}")
    await release_slot(backends, org_id=org, slot_id="now-it-fits")

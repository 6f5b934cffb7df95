"""/v1/admin: dead letters (list, replay, discard) and flag overrides, admin scope only."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from tests.api.conftest import Api, Tenant
from vocalis.core.db import utcnow
from vocalis.core.scopes import Role
from vocalis.workers import deadletters


async def _letter(api: Api, org_id: str | None, **changes: Any) -> str:
    now = utcnow()
    values: dict[str, Any] = {
        "task_name": "vocalis.maintenance.retention",
        "task_id": "t-1",
        "queue": "maintenance",
        "args": [],
        "kwargs": {},
        "org_id": org_id,
        "error": ValueError("boom"),
        "transient": False,
        "attempts": 1,
        "first_failed_at": now,
        "last_failed_at": now,
    }
    values.update(changes)
    letter = await deadletters.record(api.backends.database, **values)
    return letter.id


async def _admin(api: Api) -> Tenant:
    return await api.tenant()  # an owner key holds the admin scope


async def test_keys_without_the_admin_scope_are_refused(admin_api: Api) -> None:
    owner = await _admin(admin_api)
    for role in (Role.DEVELOPER, Role.VIEWER):
        key = await admin_api.key_for(owner, role)
        for method, path in (
            ("GET", "/v1/admin/dead-letters"),
            ("POST", "/v1/admin/dead-letters/dlq_x/replay"),
            ("POST", "/v1/admin/dead-letters/dlq_x/discard"),
            ("GET", "/v1/admin/flags"),
            ("PUT", "/v1/admin/flags/api.rate_limiting"),
        ):
            body = {"value": False} if method == "PUT" else None
            response = await admin_api.client.request(method, path, headers=key.headers, json=body)
            assert response.status_code == 403, (role, method, path)
            assert response.json()["code"] == "forbidden_scope"


async def test_an_admin_key_lists_dead_letters_newest_first(admin_api: Api) -> None:
    owner = await _admin(admin_api)
    older = await _letter(admin_api, owner.org_id)
    newer = await _letter(admin_api, None, task_name="vocalis.maintenance.sweep_outbox")
    listed = await admin_api.client.get("/v1/admin/dead-letters", headers=owner.headers)
    assert listed.status_code == 200
    assert [d["id"] for d in listed.json()["data"]] == [newer, older]
    page = await admin_api.client.get("/v1/admin/dead-letters?limit=1", headers=owner.headers)
    assert page.json()["has_more"] is True
    rest = await admin_api.client.get(
        f"/v1/admin/dead-letters?limit=1&cursor={page.json()['next_cursor']}",
        headers=owner.headers,
    )
    assert [d["id"] for d in rest.json()["data"]] == [older]


async def test_another_organisations_dead_letters_are_invisible(admin_api: Api) -> None:
    acme = await admin_api.tenant("Acme")
    other = await admin_api.tenant("Other")
    theirs = await _letter(admin_api, acme.org_id)
    listed = await admin_api.client.get("/v1/admin/dead-letters", headers=other.headers)
    assert listed.json()["data"] == []
    got = await admin_api.client.get(f"/v1/admin/dead-letters/{theirs}", headers=other.headers)
    assert got.status_code == 404


async def test_replay_enqueues_the_task_with_its_arguments(admin_api: Api) -> None:
    owner = await _admin(admin_api)
    letter_id = await _letter(admin_api, owner.org_id, kwargs={"org_id": owner.org_id})
    replayed = await admin_api.client.post(
        f"/v1/admin/dead-letters/{letter_id}/replay", headers=owner.headers
    )
    assert replayed.status_code == 202, replayed.text
    body = replayed.json()
    assert body["status"] == "replayed" and body["replay_count"] == 1
    client = aioredis.Redis.from_url(admin_api.settings.redis_url)
    [raw] = await client.lrange("maintenance", 0, -1)
    await client.aclose()
    message = json.loads(raw)
    assert message["headers"]["task"] == "vocalis.maintenance.retention"
    assert message["headers"]["id"] == body["replay_task_id"]
    again = await admin_api.client.post(
        f"/v1/admin/dead-letters/{letter_id}/replay", headers=owner.headers
    )
    assert again.status_code == 409


async def test_a_dead_letter_with_redacted_arguments_cannot_be_replayed(admin_api: Api) -> None:
    owner = await _admin(admin_api)
    letter_id = await _letter(admin_api, owner.org_id, kwargs={"password": "hunter2"})
    listed = await admin_api.client.get(
        f"/v1/admin/dead-letters/{letter_id}", headers=owner.headers
    )
    assert listed.json()["kwargs"] == {"password": "[SECRET]"}
    refused = await admin_api.client.post(
        f"/v1/admin/dead-letters/{letter_id}/replay", headers=owner.headers
    )
    assert refused.status_code == 409


async def test_discard_marks_it_dealt_with(admin_api: Api) -> None:
    owner = await _admin(admin_api)
    letter_id = await _letter(admin_api, owner.org_id)
    discarded = await admin_api.client.post(
        f"/v1/admin/dead-letters/{letter_id}/discard", headers=owner.headers
    )
    assert discarded.status_code == 200
    assert discarded.json()["status"] == "discarded"
    open_now = await admin_api.client.get(
        "/v1/admin/dead-letters?status=open", headers=owner.headers
    )
    assert open_now.json()["data"] == []


async def test_an_admin_overrides_a_flag_for_its_organisation_only(admin_api: Api) -> None:
    acme = await admin_api.tenant("Acme")
    other = await admin_api.tenant("Other")
    set_ = await admin_api.client.put(
        "/v1/admin/flags/transcripts.redaction", json={"value": False}, headers=acme.headers
    )
    assert set_.status_code == 200, set_.text
    assert set_.json()["value"] is False and set_.json()["org_override"] is False

    def value(flags: list[dict[str, Any]]) -> Any:
        return next(f["value"] for f in flags if f["key"] == "transcripts.redaction")

    mine = (await admin_api.client.get("/v1/admin/flags", headers=acme.headers)).json()
    theirs = (await admin_api.client.get("/v1/admin/flags", headers=other.headers)).json()
    assert value(mine) is False
    assert value(theirs) is True
    removed = await admin_api.client.delete(
        "/v1/admin/flags/transcripts.redaction", headers=acme.headers
    )
    assert removed.status_code == 204
    mine = (await admin_api.client.get("/v1/admin/flags", headers=acme.headers)).json()
    assert value(mine) is True


async def test_flag_values_must_match_the_flag_type_and_key(admin_api: Api) -> None:
    owner = await _admin(admin_api)
    wrong_type = await admin_api.client.put(
        "/v1/admin/flags/transcripts.redaction", json={"value": "yes"}, headers=owner.headers
    )
    assert wrong_type.status_code == 422
    unknown = await admin_api.client.put(
        "/v1/admin/flags/no.such.flag", json={"value": True}, headers=owner.headers
    )
    assert unknown.status_code == 404

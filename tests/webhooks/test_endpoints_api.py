"""/v1/webhooks: endpoints are managed per organisation, with scopes, filters and the SSRF guard."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy import select

from tests.api.conftest import Api
from tests.webhooks.harness import fast_settings, start_app
from vocalis.core.scopes import Role
from vocalis.webhooks.models import WebhookEndpoint
from vocalis.webhooks.secret_box import key_file

HOOK = "http://127.0.0.1:9/hook"


async def test_creating_an_endpoint_returns_a_whsec_secret_once(wh_api: Api) -> None:
    tenant = await wh_api.tenant()
    created = await wh_api.client.post(
        "/v1/webhooks",
        json={"url": HOOK, "event_types": ["conversation.ended"]},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert len(body["secret"]) >= len("whsec_") + 32  # base64 of 24+ random bytes
    assert body["event_types"] == ["conversation.ended"]
    fetched = await wh_api.client.get(f"/v1/webhooks/{body['id']}", headers=tenant.headers)
    assert fetched.status_code == 200
    assert "secret" not in fetched.json()


async def test_the_secret_is_stored_encrypted(wh_api: Api) -> None:
    tenant = await wh_api.tenant()
    created = (
        await wh_api.client.post("/v1/webhooks", json={"url": HOOK}, headers=tenant.headers)
    ).json()
    async with wh_api.backends.database.session() as session:
        row = await session.scalar(
            select(WebhookEndpoint).where(WebhookEndpoint.id == created["id"])
        )
    assert row is not None
    assert created["secret"] not in row.secret_encrypted
    assert created["secret"][len("whsec_") :] not in row.secret_encrypted


async def test_embedded_mode_generates_the_encryption_key_file_with_mode_0600(
    sqlite_wh_api: Api,
) -> None:
    tenant = await sqlite_wh_api.tenant()
    await sqlite_wh_api.client.post("/v1/webhooks", json={"url": HOOK}, headers=tenant.headers)
    path = key_file(sqlite_wh_api.settings.data_dir)
    assert path.exists()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_unknown_event_types_are_refused(wh_api: Api) -> None:
    tenant = await wh_api.tenant()
    response = await wh_api.client.post(
        "/v1/webhooks",
        json={"url": HOOK, "event_types": ["conversation.ended", "conversation.exploded"]},
        headers=tenant.headers,
    )
    assert response.status_code == 422
    assert "conversation.exploded" in response.text


async def test_private_addresses_are_refused_unless_allow_listed(
    tmp_path: Path, redis_url: str
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/v.db"
    settings = fast_settings(tmp_path / "data", url, redis_url, outbound_allowlist="")
    async for api in start_app(settings):
        tenant = await api.tenant()
        for target in (HOOK, "http://169.254.169.254/latest", "http://10.1.2.3/h"):
            refused = await api.client.post(
                "/v1/webhooks", json={"url": target}, headers=tenant.headers
            )
            assert refused.status_code == 400, target
            assert refused.json()["code"] == "outbound_url_forbidden"


async def test_an_allow_listed_private_address_is_accepted(wh_api: Api) -> None:
    tenant = await wh_api.tenant()
    response = await wh_api.client.post("/v1/webhooks", json={"url": HOOK}, headers=tenant.headers)
    assert response.status_code == 201


async def test_changing_the_url_passes_the_guard_again(tmp_path: Path, redis_url: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/v.db"
    settings = fast_settings(tmp_path / "data", url, redis_url, outbound_allowlist="127.0.0.1")
    async for api in start_app(settings):
        tenant = await api.tenant()
        created = (
            await api.client.post("/v1/webhooks", json={"url": HOOK}, headers=tenant.headers)
        ).json()
        moved = await api.client.patch(
            f"/v1/webhooks/{created['id']}",
            json={"url": "http://192.168.1.1/hook"},
            headers=tenant.headers,
        )
        assert moved.status_code == 400
        assert moved.json()["code"] == "outbound_url_forbidden"


async def test_a_viewer_can_read_but_not_change_endpoints(wh_api: Api) -> None:
    owner = await wh_api.tenant()
    viewer = await wh_api.key_for(owner, Role.VIEWER)
    created = await wh_api.client.post("/v1/webhooks", json={"url": HOOK}, headers=owner.headers)
    assert (await wh_api.client.get("/v1/webhooks", headers=viewer.headers)).status_code == 200
    refused = await wh_api.client.post("/v1/webhooks", json={"url": HOOK}, headers=viewer.headers)
    assert refused.status_code == 403
    delete = await wh_api.client.delete(
        f"/v1/webhooks/{created.json()['id']}", headers=viewer.headers
    )
    assert delete.status_code == 403


async def test_another_organisations_endpoint_is_not_found(wh_api: Api) -> None:
    acme = await wh_api.tenant("Acme")
    other = await wh_api.tenant("Other")
    created = (
        await wh_api.client.post("/v1/webhooks", json={"url": HOOK}, headers=acme.headers)
    ).json()
    for method, path in (
        ("GET", f"/v1/webhooks/{created['id']}"),
        ("PATCH", f"/v1/webhooks/{created['id']}"),
        ("DELETE", f"/v1/webhooks/{created['id']}"),
        ("GET", f"/v1/webhooks/{created['id']}/deliveries"),
        ("POST", f"/v1/webhooks/{created['id']}/test"),
    ):
        body: dict[str, str] | None = {} if method == "PATCH" else None
        response = await wh_api.client.request(method, path, headers=other.headers, json=body)
        assert response.status_code == 404, (method, path)
    listed = (await wh_api.client.get("/v1/webhooks", headers=other.headers)).json()
    assert listed["data"] == []


async def test_endpoints_are_listed_newest_first_with_cursor_pagination(wh_api: Api) -> None:
    tenant = await wh_api.tenant()
    ids = [
        (
            await wh_api.client.post(
                "/v1/webhooks", json={"url": f"{HOOK}{i}"}, headers=tenant.headers
            )
        ).json()["id"]
        for i in range(3)
    ]
    first = (await wh_api.client.get("/v1/webhooks?limit=2", headers=tenant.headers)).json()
    assert first["has_more"] is True
    second = (
        await wh_api.client.get(
            f"/v1/webhooks?limit=2&cursor={first['next_cursor']}", headers=tenant.headers
        )
    ).json()
    seen = [e["id"] for e in first["data"] + second["data"]]
    assert seen == list(reversed(ids))
    assert second["has_more"] is False


async def test_re_enabling_an_endpoint_clears_its_failure_count(wh_api: Api) -> None:
    tenant = await wh_api.tenant()
    created = (
        await wh_api.client.post("/v1/webhooks", json={"url": HOOK}, headers=tenant.headers)
    ).json()
    async with wh_api.backends.database.session() as session:
        row = await session.get(WebhookEndpoint, created["id"])
        assert row is not None
        row.enabled, row.consecutive_failures, row.disabled_reason = False, 7, "failing"
    enabled = await wh_api.client.patch(
        f"/v1/webhooks/{created['id']}", json={"enabled": True}, headers=tenant.headers
    )
    assert enabled.json()["consecutive_failures"] == 0
    assert enabled.json()["disabled_reason"] is None


async def test_rotating_the_secret_returns_a_new_one(wh_api: Api) -> None:
    tenant = await wh_api.tenant()
    created = (
        await wh_api.client.post("/v1/webhooks", json={"url": HOOK}, headers=tenant.headers)
    ).json()
    rotated = await wh_api.client.post(
        f"/v1/webhooks/{created['id']}/rotate-secret", headers=tenant.headers
    )
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != created["secret"]


async def test_an_organisation_may_not_exceed_its_endpoint_limit(
    tmp_path: Path, redis_url: str
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/v.db"
    settings = fast_settings(tmp_path / "data", url, redis_url, webhook_max_endpoints_per_org=1)
    async for api in start_app(settings):
        tenant = await api.tenant()
        ok = await api.client.post("/v1/webhooks", json={"url": HOOK}, headers=tenant.headers)
        assert ok.status_code == 201
        refused = await api.client.post("/v1/webhooks", json={"url": HOOK}, headers=tenant.headers)
        assert refused.status_code == 409

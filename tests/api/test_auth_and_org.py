"""Authentication, scopes, API keys and tenant isolation."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from tests.api.conftest import Api
from vocalis.core.scopes import Role

PROBLEM = "application/problem+json"


async def test_owner_key_reads_its_organisation(api: Api) -> None:
    acme = await api.tenant("Acme")
    response = await api.client.get("/v1/org", headers=acme.headers)
    assert response.status_code == 200
    assert response.json()["id"] == acme.org_id
    assert response.json()["name"] == "Acme"


async def test_missing_key_is_401_problem(api: Api) -> None:
    response = await api.client.get("/v1/org")
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "auth_missing"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_wrong_key_is_401_problem_with_request_id(api: Api) -> None:
    response = await api.client.get(
        "/v1/org", headers={"Authorization": "Bearer vk_wrongwrongwrongwrongwrongwrongwrong"}
    )
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "auth_invalid"
    assert body["request_id"] == response.headers["x-request-id"]


async def test_created_key_is_shown_once_and_stored_hashed(api: Api) -> None:
    acme = await api.tenant()
    created = await api.client.post(
        "/v1/api-keys", json={"name": "ci", "role": "viewer"}, headers=acme.headers
    )
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("vk_")
    listed = await api.client.get("/v1/api-keys", headers=acme.headers)
    assert all("key" not in k for k in listed.json()["data"])
    async with api.backends.database.session() as session:
        from sqlalchemy import select

        from vocalis.orgs.models import ApiKey

        stored = (await session.scalars(select(ApiKey.secret_hash))).all()
    assert key not in stored
    assert (
        await api.client.get("/v1/org", headers={"Authorization": f"Bearer {key}"})
    ).status_code == 200


async def test_viewer_key_cannot_write(api: Api) -> None:
    acme = await api.tenant()
    viewer = await api.key_for(acme, Role.VIEWER)
    response = await api.client.patch("/v1/org", json={"name": "x"}, headers=viewer.headers)
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden_scope"


async def test_key_cannot_create_a_more_powerful_key(api: Api) -> None:
    acme = await api.tenant()
    admin = await api.key_for(acme, Role.ADMIN)
    response = await api.client.post(
        "/v1/api-keys", json={"name": "x", "role": "owner"}, headers=admin.headers
    )
    assert response.status_code == 403


async def test_scopes_beyond_the_role_are_refused(api: Api) -> None:
    acme = await api.tenant()
    response = await api.client.post(
        "/v1/api-keys",
        json={"name": "x", "role": "viewer", "scopes": ["agents:write"]},
        headers=acme.headers,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_failed"


async def test_narrowed_scopes_are_enforced(api: Api) -> None:
    acme = await api.tenant()
    created = await api.client.post(
        "/v1/api-keys",
        json={"name": "x", "role": "developer", "scopes": ["agents:read"]},
        headers=acme.headers,
    )
    narrow = {"Authorization": f"Bearer {created.json()['key']}"}
    assert (await api.client.get("/v1/org", headers=narrow)).status_code == 403


async def test_revoked_key_stops_working(api: Api) -> None:
    acme = await api.tenant()
    created = (
        await api.client.post("/v1/api-keys", json={"name": "tmp"}, headers=acme.headers)
    ).json()
    revoked = await api.client.delete(f"/v1/api-keys/{created['id']}", headers=acme.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    response = await api.client.get(
        "/v1/org", headers={"Authorization": f"Bearer {created['key']}"}
    )
    assert response.status_code == 401


async def test_a_cached_key_revoked_through_the_api_is_refused_at_once(api: Api) -> None:
    acme = await api.tenant()
    created = (
        await api.client.post("/v1/api-keys", json={"name": "tmp"}, headers=acme.headers)
    ).json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert (await api.client.get("/v1/org", headers=headers)).status_code == 200  # cached now
    await api.client.delete(f"/v1/api-keys/{created['id']}", headers=acme.headers)
    assert (await api.client.get("/v1/org", headers=headers)).status_code == 401


async def test_a_cached_key_revoked_by_another_process_is_refused_within_a_second(
    api: Api,
) -> None:
    """The principal cache: a key revoked where this process cannot see it (another worker,
    or by hand in the database) is refused within `api_key_cache_ttl_s` (1 s)."""
    from vocalis.core.security import CachedKeyStore
    from vocalis.orgs import service

    assert isinstance(api.app.state.api_keys, CachedKeyStore)
    assert api.app.state.api_keys.ttl_s == api.settings.api_key_cache_ttl_s == 1.0
    acme = await api.tenant()
    extra = await api.key_for(acme, Role.VIEWER)
    listed = (await api.client.get("/v1/api-keys", headers=acme.headers)).json()["data"]
    [key_id] = [k["id"] for k in listed if k["name"] == Role.VIEWER.value]
    assert (await api.client.get("/v1/org", headers=extra.headers)).status_code == 200
    async with api.backends.database.session() as session:  # not through this app
        await service.revoke_api_key(session=session, org_id=acme.org_id, key_id=key_id)
    revoked_at = time.monotonic()
    statuses: list[tuple[float, int]] = []
    while time.monotonic() - revoked_at < 3.0:
        sent = time.monotonic() - revoked_at
        status = (await api.client.get("/v1/org", headers=extra.headers)).status_code
        statuses.append((round(sent, 3), status))
        assert status in (200, 401), statuses
        if sent > 1.0:
            # Every request sent more than one second after the revocation is refused.
            assert status == 401, statuses
            break
        await asyncio.sleep(0.05)
    assert statuses[-1][1] == 401, statuses


async def test_expired_key_stops_working(api: Api) -> None:
    acme = await api.tenant()
    async with api.backends.database.session() as session:
        from vocalis.orgs import service

        issued = await service.create_api_key(
            session=session,
            org_id=acme.org_id,
            name="short",
            role=Role.VIEWER,
            expires_at=datetime.now(UTC) + timedelta(seconds=1),
        )
        issued.key.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    response = await api.client.get(
        "/v1/org", headers={"Authorization": f"Bearer {issued.plaintext}"}
    )
    assert response.status_code == 401


async def test_last_used_is_recorded(api: Api) -> None:
    acme = await api.tenant()
    await api.client.get("/v1/org", headers=acme.headers)
    keys = (await api.client.get("/v1/api-keys", headers=acme.headers)).json()["data"]
    assert keys[0]["last_used_at"] is not None


async def test_another_organisations_key_is_404(api: Api) -> None:
    acme = await api.tenant("Acme")
    globex = await api.tenant("Globex")
    theirs = (
        await api.client.post("/v1/api-keys", json={"name": "g"}, headers=globex.headers)
    ).json()
    response = await api.client.delete(f"/v1/api-keys/{theirs['id']}", headers=acme.headers)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    listed = (await api.client.get("/v1/api-keys", headers=acme.headers)).json()["data"]
    assert theirs["id"] not in {k["id"] for k in listed}


async def test_api_keys_paginate_with_cursor(api: Api) -> None:
    acme = await api.tenant()
    for i in range(5):
        await api.client.post("/v1/api-keys", json={"name": f"k{i}"}, headers=acme.headers)
    first = (await api.client.get("/v1/api-keys?limit=4", headers=acme.headers)).json()
    assert first["has_more"] and len(first["data"]) == 4
    second = (
        await api.client.get(
            f"/v1/api-keys?limit=4&cursor={first['next_cursor']}", headers=acme.headers
        )
    ).json()
    assert not second["has_more"] and len(second["data"]) == 2
    ids = [k["id"] for k in first["data"] + second["data"]]
    assert len(set(ids)) == 6


async def test_a_narrowed_key_cannot_mint_a_broader_one(api: Api) -> None:
    acme = await api.tenant()
    narrow = await api.key_for(acme, Role.ADMIN, scopes=["api_keys:write", "org:read"])
    refused = await api.client.post(
        "/v1/api-keys",
        json={"name": "x", "role": "developer", "scopes": ["agents:write"]},
        headers=narrow.headers,
    )
    assert refused.status_code == 403
    default = await api.client.post(
        "/v1/api-keys", json={"name": "y", "role": "admin"}, headers=narrow.headers
    )
    assert default.status_code == 201
    assert set(default.json()["scopes"]) <= {"api_keys:write", "org:read"}


async def test_the_organisation_read_sees_a_change_committed_elsewhere_at_once(
    api: Api,
) -> None:
    """`GET /v1/org` reads outside an ORM session, in one hop (issue 11), but caches
    nothing: a change committed by another process is served by the next request."""
    from vocalis.orgs import service

    acme = await api.tenant("Acme")
    assert (await api.client.get("/v1/org", headers=acme.headers)).json()["name"] == "Acme"
    async with api.backends.database.session() as session:  # not through this app
        await service.update_org(
            session=session, org_id=acme.org_id, name="Acme Renamed", retention_days=30
        )
    body = (await api.client.get("/v1/org", headers=acme.headers)).json()
    assert (body["name"], body["retention_days"]) == ("Acme Renamed", 30)
    assert body["created_at"].endswith("Z") or body["created_at"].endswith("+00:00")


async def test_the_organisation_read_is_a_client_span_of_the_request(api: Api) -> None:
    """The one-hop read still has its SQL client span, a child of the request's span (the
    request's context travels to the reader's thread)."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tests.fixtures.spans import collect_spans

    with collect_spans(InMemorySpanExporter()) as exporter:
        acme = await api.tenant("Acme")
        exporter.clear()
        assert (await api.client.get("/v1/org", headers=acme.headers)).status_code == 200
        spans = exporter.get_finished_spans()
    [request] = [s for s in spans if s.name == "GET /v1/org"]
    reads = [
        s
        for s in spans
        if (s.attributes or {}).get("db.statement", "").startswith("SELECT")
        and "organizations" in str((s.attributes or {}).get("db.statement"))
    ]
    assert reads, [s.name for s in spans]
    assert all(s.context.trace_id == request.context.trace_id for s in reads)
    assert all(s.parent is not None and s.parent.span_id == request.context.span_id for s in reads)
    assert (request.attributes or {}).get("vocalis.org_id") == acme.org_id

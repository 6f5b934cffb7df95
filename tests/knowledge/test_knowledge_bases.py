"""Knowledge-base CRUD, scopes and tenant isolation at the API."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.knowledge.harness import create_kb, query, upload
from vocalis.core.scopes import Role


async def test_a_knowledge_base_is_created_listed_read_renamed_and_deleted(kb_api: Api) -> None:
    acme = await kb_api.tenant("Acme")
    created = await kb_api.client.post(
        "/v1/knowledge-bases",
        json={"name": "Handbook", "description": "HR policies"},
        headers=acme.headers,
    )
    assert created.status_code == 201, created.text
    kb = created.json()
    assert kb["id"].startswith("kb_")
    assert (kb["name"], kb["description"], kb["document_count"]) == ("Handbook", "HR policies", 0)

    listed = await kb_api.client.get("/v1/knowledge-bases", headers=acme.headers)
    assert [k["id"] for k in listed.json()["data"]] == [kb["id"]]

    renamed = await kb_api.client.patch(
        f"/v1/knowledge-bases/{kb['id']}", json={"name": "Staff handbook"}, headers=acme.headers
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Staff handbook"
    assert renamed.json()["description"] == "HR policies"

    deleted = await kb_api.client.delete(f"/v1/knowledge-bases/{kb['id']}", headers=acme.headers)
    assert deleted.status_code == 204
    gone = await kb_api.client.get(f"/v1/knowledge-bases/{kb['id']}", headers=acme.headers)
    assert gone.status_code == 404
    assert gone.json()["code"] == "not_found"


async def test_knowledge_bases_are_listed_newest_first_with_cursor_pages(kb_api: Api) -> None:
    acme = await kb_api.tenant("Acme")
    ids = [await create_kb(kb_api, acme, f"kb {i}") for i in range(3)]
    first = await kb_api.client.get("/v1/knowledge-bases?limit=2", headers=acme.headers)
    page = first.json()
    assert [k["id"] for k in page["data"]] == ids[::-1][:2]
    assert page["has_more"] is True
    second = await kb_api.client.get(
        f"/v1/knowledge-bases?limit=2&cursor={page['next_cursor']}", headers=acme.headers
    )
    assert [k["id"] for k in second.json()["data"]] == [ids[0]]
    assert second.json()["has_more"] is False


async def test_another_organisation_gets_404_for_every_route_of_a_knowledge_base(
    sqlite_kb_api: Api,
) -> None:
    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    other = await api.tenant("Globex")
    kb_id = await create_kb(api, acme)
    headers = other.headers
    answers = [
        await api.client.get(f"/v1/knowledge-bases/{kb_id}", headers=headers),
        await api.client.patch(f"/v1/knowledge-bases/{kb_id}", json={"name": "x"}, headers=headers),
        await api.client.get(f"/v1/knowledge-bases/{kb_id}/documents", headers=headers),
        await upload(api, other, kb_id, "notes.txt", b"Globex was here."),
        await query(api, other, kb_id, "anything"),
        await api.client.delete(f"/v1/knowledge-bases/{kb_id}", headers=headers),
    ]
    assert [a.status_code for a in answers] == [404] * len(answers)
    assert {a.json()["code"] for a in answers} == {"not_found"}
    listed = await api.client.get("/v1/knowledge-bases", headers=headers)
    assert listed.json()["data"] == []
    still = await api.client.get(f"/v1/knowledge-bases/{kb_id}", headers=acme.headers)
    assert still.status_code == 200


async def test_a_viewer_can_read_and_query_but_not_create_upload_or_delete(
    sqlite_kb_api: Api,
) -> None:
    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    kb_id = await create_kb(api, acme)
    viewer = await api.key_for(acme, Role.VIEWER)
    assert (await api.client.get(f"/v1/knowledge-bases/{kb_id}", headers=viewer.headers)).is_success
    assert (await query(api, viewer, kb_id, "anything")).status_code == 200
    refused = [
        await api.client.post("/v1/knowledge-bases", json={"name": "x"}, headers=viewer.headers),
        await upload(api, viewer, kb_id, "notes.txt", b"Some notes."),
        await api.client.delete(f"/v1/knowledge-bases/{kb_id}", headers=viewer.headers),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403]
    assert {r.json()["code"] for r in refused} == {"forbidden_scope"}


async def test_a_knowledge_base_needs_a_name(sqlite_kb_api: Api) -> None:
    acme = await sqlite_kb_api.tenant("Acme")
    answer = await sqlite_kb_api.client.post(
        "/v1/knowledge-bases", json={"name": "  "}, headers=acme.headers
    )
    assert answer.status_code == 422
    assert answer.json()["code"] == "validation_failed"

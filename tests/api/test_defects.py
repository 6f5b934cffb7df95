"""Defects found by trying the API as an attacker and as a careless client would (issue 15):
each case that once failed is kept here, and must stay fixed."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from starlette.types import Message, Receive, Scope, Send

from tests.api.conftest import Api, Tenant, make_settings
from vocalis.agents.schemas import AgentConfig, AgentUpdate
from vocalis.app import create_app
from vocalis.core import jsonguard
from vocalis.core.middleware import UPLOAD_ROUTES, is_upload_route
from vocalis.core.migrate import upgrade
from vocalis.core.scopes import Role
from vocalis.knowledge.models import KnowledgeBase
from vocalis.orgs import service as orgs
from vocalis.orgs.bootstrap import ensure_first_run_key
from vocalis.wiring import build_backends

PROBLEM = "application/problem+json"


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def _cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "object"}
    for _ in range(depth):
        node = {"type": "object", "properties": {"a": node}}
    return node


async def _agent(api: Api, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    response = await api.client.post(
        "/v1/agents", json={"name": "Support", **fields}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


# --- success before commit ---------------------------------------------------------------
def _serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the uvicorn test server did not start")
        time.sleep(0.05)
    return server, thread, port


@pytest.fixture
async def served(
    tmp_path: Path, database_url: str, redis_url: str
) -> AsyncIterator[tuple[str, Tenant]]:
    """The app on a real HTTP server (SQLite and PostgreSQL), and an owner key."""
    settings = make_settings(  # 400 requests in a few seconds: no rate limit in the way
        tmp_path, database_url, redis_url, flags={"api.rate_limiting": False}
    )
    await asyncio.to_thread(upgrade, settings.resolved_database_url)
    backends = await build_backends(settings)
    try:
        async with backends.database.session() as session:
            org, _ = await orgs.create_org(
                session=session, name="Acme", owner_email="acme@example.test"
            )
            issued = await orgs.create_api_key(
                session=session, org_id=org.id, name="test", role=Role.OWNER
            )
        tenant = Tenant(org.id, issued.plaintext)
        server, thread, port = await asyncio.to_thread(_serve, create_app(settings))
        try:
            yield f"http://127.0.0.1:{port}", tenant
        finally:
            server.should_exit = True
            await asyncio.to_thread(thread.join, 30)
    finally:
        await backends.close()


async def test_a_created_resource_is_readable_as_soon_as_its_201_arrives(
    served: tuple[str, Tenant],
) -> None:
    """The session used to commit after the response was sent: on SQLite the read that
    followed a 201 missed the row 200 times out of 200."""
    base_url, tenant = served
    async with httpx.AsyncClient(base_url=base_url, headers=tenant.headers, timeout=30) as http:
        for i in range(200):
            created = await http.post("/v1/knowledge-bases", json={"name": f"kb {i}"})
            assert created.status_code == 201, created.text
            read = await http.get(f"/v1/knowledge-bases/{created.json()['id']}")
            assert read.status_code == 200, (i, read.text)


async def test_the_commit_happens_before_the_response_starts(api: Api) -> None:
    """Checked at the ASGI boundary: when the 201 starts, another session sees the row."""
    acme = await api.tenant()
    seen: list[int] = []
    app = api.app

    async def count() -> int:
        async with api.backends.database.session() as session:
            return int(
                await session.scalar(
                    select(func.count())
                    .select_from(KnowledgeBase)
                    .where(KnowledgeBase.org_id == acme.org_id)
                )
                or 0
            )

    async def watching(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_and_look(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 201:
                seen.append(await count())
            await send(message)

        await app(scope, receive, send_and_look)

    transport = httpx.ASGITransport(app=watching)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        for i in range(5):
            created = await http.post(
                "/v1/knowledge-bases", json={"name": f"kb {i}"}, headers=acme.headers
            )
            assert created.status_code == 201, created.text
    assert seen == [1, 2, 3, 4, 5]


async def test_a_failed_commit_is_an_error_response_and_nothing_is_kept(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = await api.tenant()
    real_commit = AsyncSession.commit

    def mark(session: Session, _context: Any) -> None:
        if any(isinstance(o, KnowledgeBase) for o in session.new):
            session.info["writes_a_knowledge_base"] = True

    async def failing_commit(self: AsyncSession) -> None:
        # The session writing the knowledge base fails; others commit as usual.
        if self.info.get("writes_a_knowledge_base"):
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))
        await real_commit(self)

    monkeypatch.setattr(AsyncSession, "commit", failing_commit)
    event.listen(Session, "after_flush", mark)
    try:
        response = await api.client.post(
            "/v1/knowledge-bases", json={"name": "lost"}, headers=acme.headers
        )
    finally:
        event.remove(Session, "after_flush", mark)
        monkeypatch.setattr(AsyncSession, "commit", real_commit)
    _problem(response, 503, "backend_unavailable")  # retryable: nothing was kept
    listed = await api.client.get("/v1/knowledge-bases", headers=acme.headers)
    assert listed.json()["data"] == []


# --- HTTP 500 from ordinary input ---------------------------------------------------------
NULLABLE = {name for name, info in AgentConfig.model_fields.items() if not info.is_required()} - {
    name
    for name, info in AgentConfig.model_fields.items()
    if info.default is not None or info.default_factory is not None
}


@pytest.mark.parametrize("field", sorted(AgentUpdate.model_fields))
async def test_null_for_any_agent_field_is_accepted_or_refused_never_a_500(
    sqlite_api: Api, field: str
) -> None:
    """`{"model": null}` (and 10 other fields) used to fail validating the merged agent."""
    acme = await sqlite_api.tenant()
    agent = await _agent(sqlite_api, acme, first_message="Hi", analysis_plan={"summary": True})
    response = await sqlite_api.client.patch(
        f"/v1/agents/{agent['id']}", json={field: None}, headers=acme.headers
    )
    if field in NULLABLE:
        assert response.status_code == 200, response.text
        assert response.json()[field] is None
    else:
        body = _problem(response, 422, "validation_failed")
        assert body["errors"][0]["loc"] == ["body", field]
    assert {"first_message", "analysis_plan"} <= NULLABLE


async def test_a_patch_whose_fields_do_not_fit_together_is_a_422(sqlite_api: Api) -> None:
    """Each field valid alone, invalid with the agent's others (handoffs need the SDK)."""
    acme = await sqlite_api.tenant()
    agent = await _agent(sqlite_api, acme)
    response = await sqlite_api.client.patch(
        f"/v1/agents/{agent['id']}", json={"handoffs": [agent["id"]]}, headers=acme.headers
    )
    body = _problem(response, 422, "validation_failed")
    assert "openai_agents" in body["detail"]


@pytest.mark.parametrize(
    "field",
    [
        "audio",
        "max_output_tokens",
        "output_modalities",
        "instructions",
        "tools",
        "tool_choice",
        "truncation",
    ],
)
async def test_null_in_a_client_secret_session_is_a_422(sqlite_api: Api, field: str) -> None:
    acme = await sqlite_api.tenant()
    response = await sqlite_api.client.post(
        "/v1/realtime/client_secrets", json={"session": {field: None}}, headers=acme.headers
    )
    body = _problem(response, 422, "validation_failed")
    assert body["errors"][0]["loc"] == ["body", "session", field]
    assert not await sqlite_api.backends.redis.keys("vocalis:rt:secret:*")  # none minted


async def test_nullable_client_secret_session_fields_take_null(sqlite_api: Api) -> None:
    acme = await sqlite_api.tenant()
    response = await sqlite_api.client.post(
        "/v1/realtime/client_secrets",
        json={"session": {"tracing": None, "metadata": None, "include": None}},
        headers=acme.headers,
    )
    assert response.status_code == 200, response.text


async def test_an_api_key_expiry_without_a_timezone_is_a_422(sqlite_api: Api) -> None:
    acme = await sqlite_api.tenant()
    naive = await sqlite_api.client.post(
        "/v1/api-keys",
        json={"name": "ci", "expires_at": "2030-01-01T00:00:00"},
        headers=acme.headers,
    )
    body = _problem(naive, 422, "validation_failed")
    assert body["errors"][0]["loc"] == ["body", "expires_at"]
    aware = await sqlite_api.client.post(
        "/v1/api-keys",
        json={"name": "ci", "expires_at": "2030-01-01T00:00:00+02:00"},
        headers=acme.headers,
    )
    assert aware.status_code == 201, aware.text


async def test_huge_version_numbers_are_refused_not_sent_to_the_database(api: Api) -> None:
    acme = await api.tenant()
    agent = await _agent(api, acme)
    for version in ("99999999999999999999999", "2147483648", "0", "-1"):
        response = await api.client.get(
            f"/v1/agents/{agent['id']}/versions/{version}", headers=acme.headers
        )
        _problem(response, 422, "validation_failed")
    assert (
        await api.client.get(f"/v1/agents/{agent['id']}/versions/1", headers=acme.headers)
    ).status_code == 200
    for position in ({"version": 10**22}, {"version": 0}, {"version": "1"}):
        listed = await api.client.get(
            f"/v1/agents/{agent['id']}/versions",
            params={"cursor": _cursor(position)},
            headers=acme.headers,
        )
        _problem(listed, 400, "invalid_cursor")


@pytest.mark.parametrize("path", ["/v1/admin/dead-letters", "/v1/webhooks", "/v1/phone-numbers"])
async def test_a_cursor_that_decodes_to_junk_is_a_400(api: Api, path: str) -> None:
    acme = await api.tenant()
    for position in (
        {"c": "not a date", "id": "x"},
        {"c": "2026-01-01T00:00:00+00:00", "id": "nul\u0000"},
        {"c": "2026-01-01T00:00:00+00:00", "id": 10**30},
        {"c": ["2026"], "id": "x"},
        {"c": "2026-01-01T00:00:00+00:00", "id": "x" * 300},
    ):
        response = await api.client.get(
            path, params={"cursor": _cursor(position)}, headers=acme.headers
        )
        _problem(response, 400, "invalid_cursor")
    # A time without an offset is taken as UTC.
    naive = await api.client.get(
        path,
        params={"cursor": _cursor({"c": "2026-01-01T00:00:00", "id": "x"})},
        headers=acme.headers,
    )
    assert naive.status_code == 200, naive.text


@pytest.mark.parametrize("where", ["tool", "analysis"])
async def test_json_nested_900_deep_is_a_422_not_a_recursion_error(
    sqlite_api: Api, where: str
) -> None:
    acme = await sqlite_api.tenant()
    deep = _nested(450)  # 900 levels of JSON
    body: dict[str, Any] = {"name": "Deep"}
    if where == "tool":
        body["tools"] = [
            {
                "type": "http_request",
                "name": "lookup",
                "description": "Look up.",
                "url": "https://example.com/x",
                "parameters": deep,
            }
        ]
    else:
        body["analysis_plan"] = {"structured_data_schema": deep}
    response = await sqlite_api.client.post("/v1/agents", json=body, headers=acme.headers)
    problem = _problem(response, 422, "validation_failed")
    assert "nested deeper" in problem["detail"]
    # The same on every JSON body, whatever the route (the check comes before routing).
    org = await sqlite_api.client.patch("/v1/org", json={"name": deep}, headers=acme.headers)
    _problem(org, 422, "validation_failed")


async def test_json_at_the_nesting_limit_is_handled_normally(sqlite_api: Api) -> None:
    acme = await sqlite_api.tenant()
    schema = _nested(jsonguard.MAX_DEPTH // 2 - 4)  # within the limit, inside the body
    response = await sqlite_api.client.post(
        "/v1/agents",
        json={"name": "Deep", "analysis_plan": {"structured_data_schema": schema}},
        headers=acme.headers,
    )
    assert response.status_code == 201, response.text


async def test_a_body_of_brackets_a_million_deep_is_a_422(sqlite_api: Api) -> None:
    acme = await sqlite_api.tenant()
    raw = b"[" * 500_000 + b"]" * 500_000
    response = await sqlite_api.client.post(
        "/v1/agents",
        content=raw,
        headers={**acme.headers, "Content-Type": "application/json"},
    )
    _problem(response, 422, "validation_failed")


# --- the JSON body limit ------------------------------------------------------------------
async def test_only_the_upload_routes_get_the_upload_limit(sqlite_api: Api) -> None:
    """Any path containing `/documents` used to get the 50 MiB limit."""
    acme = await sqlite_api.tenant()
    limit = sqlite_api.settings.max_request_body_bytes
    big = json.dumps({"name": "x" * (limit + 10)}).encode()
    for method, path in (
        ("PATCH", "/v1/agents/documents"),
        ("POST", "/v1/agents/documents"),
        ("PATCH", "/v1/knowledge-bases/kb_x/documents"),
        ("POST", "/v1/knowledge-bases/kb_x/documents/extra"),
        ("POST", "/v1/x/audio/transcriptions"),
    ):
        response = await sqlite_api.client.request(
            method,
            path,
            content=big,
            headers={**acme.headers, "Content-Type": "application/json"},
        )
        _problem(response, 413, "payload_too_large")
    kb = await sqlite_api.client.post(
        "/v1/knowledge-bases", json={"name": "Docs"}, headers=acme.headers
    )
    upload = await sqlite_api.client.post(
        f"/v1/knowledge-bases/{kb.json()['id']}/documents",
        files={"file": ("big.md", b"# Big\n\n" + b"word " * (limit // 5 + 10), "text/markdown")},
        headers=acme.headers,
    )
    assert upload.status_code == 202, upload.text


def test_the_upload_routes_are_exactly_the_multipart_operations(sqlite_app_openapi: Any) -> None:
    multipart = {
        (method.upper(), path)
        for path, operations in sqlite_app_openapi["paths"].items()
        for method, operation in operations.items()
        if "multipart/form-data" in operation.get("requestBody", {}).get("content", {})
    }
    assert multipart == set(UPLOAD_ROUTES)
    assert is_upload_route("POST", "/v1/knowledge-bases/kb_1/documents")
    assert not is_upload_route("POST", "/v1/knowledge-bases/kb_1/documents/doc_1")
    assert not is_upload_route("PATCH", "/v1/knowledge-bases/kb_1/documents")
    assert not is_upload_route("POST", "/v1/agents/documents")


@pytest.fixture
def sqlite_app_openapi(tmp_path: Path, redis_url: str) -> dict[str, Any]:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/v.db", redis_url)
    return create_app(settings).openapi()


# --- admins and owners --------------------------------------------------------------------
async def test_an_admin_cannot_revoke_an_owner_key(api: Api) -> None:
    acme = await api.tenant()  # the owner key, as the first-run key is
    admin = await api.key_for(acme, Role.ADMIN)
    listed = await api.client.get("/v1/api-keys", headers=acme.headers)
    owner_ids = [k["id"] for k in listed.json()["data"] if k["role"] == "owner"]
    assert owner_ids
    for key_id in owner_ids:
        response = await api.client.delete(f"/v1/api-keys/{key_id}", headers=admin.headers)
        body = _problem(response, 403, "forbidden_role")
        assert "owner" in body["detail"]
    assert (await api.client.get("/v1/org", headers=acme.headers)).status_code == 200
    # Below or at its own rank it may: a developer's key, another admin's key.
    developer = await api.key_for(acme, Role.DEVELOPER)
    other_admin = await api.key_for(acme, Role.ADMIN)
    keys = (await api.client.get("/v1/api-keys", headers=acme.headers)).json()["data"]
    for role in ("developer", "admin"):
        key_id = next(k["id"] for k in keys if k["role"] == role and k["name"] == role)
        revoked = await api.client.delete(f"/v1/api-keys/{key_id}", headers=admin.headers)
        assert revoked.status_code == 200, revoked.text
    assert (await api.client.get("/v1/org", headers=developer.headers)).status_code == 401
    assert (await api.client.get("/v1/org", headers=other_admin.headers)).status_code == 401
    # An admin cannot mint an owner either (the same rule, the same code).
    minted = await api.client.post(
        "/v1/api-keys", json={"name": "x", "role": "owner"}, headers=admin.headers
    )
    _problem(minted, 403, "forbidden_role")


async def test_the_first_run_owner_key_survives_an_admin(sqlite_api: Api) -> None:
    plaintext, created = await ensure_first_run_key(
        sqlite_api.settings, sqlite_api.backends.database
    )
    assert created
    me = await sqlite_api.client.get("/v1/org", headers={"Authorization": f"Bearer {plaintext}"})
    owner = Tenant(me.json()["id"], plaintext)
    admin = await sqlite_api.key_for(owner, Role.ADMIN)
    keys = (await sqlite_api.client.get("/v1/api-keys", headers=owner.headers)).json()["data"]
    first_run = next(k for k in keys if k["name"] == "first-run owner key")
    response = await sqlite_api.client.delete(
        f"/v1/api-keys/{first_run['id']}", headers=admin.headers
    )
    _problem(response, 403, "forbidden_role")
    assert (await sqlite_api.client.get("/v1/org", headers=owner.headers)).status_code == 200


# --- NUL characters -----------------------------------------------------------------------
async def test_nul_in_any_json_body_is_a_422_before_it_reaches_the_database(api: Api) -> None:
    """PostgreSQL refuses NUL in text and JSONB; it used to be accepted and fail later."""
    acme = await api.tenant()
    agent = await _agent(api, acme)
    cases: list[tuple[str, str, dict[str, Any], list[str]]] = [
        ("POST", "/v1/knowledge-bases", {"name": "a\u0000b"}, ["body", "name"]),
        ("PATCH", "/v1/org", {"name": "\u0000"}, ["body", "name"]),
        ("POST", "/v1/api-keys", {"name": "ci\u0000"}, ["body", "name"]),
        ("POST", "/v1/agents", {"name": "x", "instructions": "\u0000"}, ["body", "instructions"]),
        (
            "PATCH",
            f"/v1/agents/{agent['id']}",
            {"metadata": {"k\u0000": "v"}},
            ["body", "metadata", "k\u0000"],
        ),
        ("POST", "/v1/agents", {"name": "x", "tools": [{"type": "a\u0000"}]}, []),
    ]
    for method, path, body, loc in cases:
        response = await api.client.request(method, path, json=body, headers=acme.headers)
        problem = _problem(response, 422, "validation_failed")
        assert "NUL" in problem["detail"]
        if loc:
            assert problem["errors"][0]["loc"] == loc
    # Nothing was written; the same requests without the NUL go through.
    assert (await api.client.get("/v1/knowledge-bases", headers=acme.headers)).json()["data"] == []
    ok = await api.client.post("/v1/knowledge-bases", json={"name": "ab"}, headers=acme.headers)
    assert ok.status_code == 201
    # An escaped backslash followed by "u0000" is text, not NUL.
    text = await api.client.post(
        "/v1/knowledge-bases", json={"name": "\\u0000"}, headers=acme.headers
    )
    assert text.status_code == 201 and text.json()["name"] == "\\u0000"


async def test_nul_in_the_url_is_a_422(api: Api) -> None:
    acme = await api.tenant()
    for url in ("/v1/agents/agt_1%00", "/v1/knowledge-bases?cursor=%00", "/v1/agents%00"):
        response = await api.client.get(url, headers=acme.headers)
        _problem(response, 422, "validation_failed")


def test_every_json_operation_refuses_nul(sqlite_app_openapi: dict[str, Any]) -> None:
    """The check sits in front of every route: list the JSON operations to be sure none
    parses its body elsewhere (an upload route would, and is multipart)."""
    json_operations = [
        (method.upper(), path)
        for path, operations in sqlite_app_openapi["paths"].items()
        for method, operation in operations.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]
    assert json_operations
    assert not [op for op in json_operations if is_upload_route(*op)]


async def test_every_json_operation_answers_nul_with_a_422(
    sqlite_api: Api, sqlite_app_openapi: dict[str, Any]
) -> None:
    acme = await sqlite_api.tenant()
    for path, operations in sqlite_app_openapi["paths"].items():
        for method, operation in operations.items():
            if "application/json" not in operation.get("requestBody", {}).get("content", {}):
                continue
            url = path.replace("{", "").replace("}", "")
            response = await sqlite_api.client.request(
                method, url, json={"name": "\u0000"}, headers=acme.headers
            )
            assert response.status_code == 422, (method, path, response.text)


# --- references ---------------------------------------------------------------------------
async def test_an_agent_naming_missing_or_foreign_knowledge_bases_is_a_422(api: Api) -> None:
    acme = await api.tenant("Acme")
    globex = await api.tenant("Globex")
    mine = await api.client.post("/v1/knowledge-bases", json={"name": "Mine"}, headers=acme.headers)
    theirs = await api.client.post(
        "/v1/knowledge-bases", json={"name": "Theirs"}, headers=globex.headers
    )
    mine_id, theirs_id = mine.json()["id"], theirs.json()["id"]
    refused = await api.client.post(
        "/v1/agents",
        json={"name": "Support", "knowledge_base_ids": [mine_id, theirs_id, "kb_nope"]},
        headers=acme.headers,
    )
    body = _problem(refused, 422, "knowledge_base_not_found")
    assert sorted(body["knowledge_base_ids"]) == sorted([theirs_id, "kb_nope"])
    assert theirs_id in body["detail"] and "kb_nope" in body["detail"]
    assert mine_id not in body["detail"]
    agent = await _agent(api, acme, knowledge_base_ids=[mine_id])
    patched = await api.client.patch(
        f"/v1/agents/{agent['id']}",
        json={"knowledge_base_ids": [mine_id, theirs_id]},
        headers=acme.headers,
    )
    body = _problem(patched, 422, "knowledge_base_not_found")
    assert body["knowledge_base_ids"] == [theirs_id]
    current = await api.client.get(f"/v1/agents/{agent['id']}", headers=acme.headers)
    assert current.json()["knowledge_base_ids"] == [mine_id]
    assert current.json()["version"] == 1
    # A knowledge base deleted after the agent named it does not block an unrelated edit.
    deleted = await api.client.delete(f"/v1/knowledge-bases/{mine_id}", headers=acme.headers)
    assert deleted.status_code == 204, deleted.text
    renamed = await api.client.patch(
        f"/v1/agents/{agent['id']}", json={"name": "Support v2"}, headers=acme.headers
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["version"] == 2

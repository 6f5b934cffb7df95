"""`Scoped(...)` is one dependency (core/security.py: the bearer scheme and the
authentication together): FastAPI resolves one node for it per request, and the OpenAPI
document and the answers without a usable key are what the two-node form gave."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from vocalis.app import create_app
from vocalis.core.deps import get_session
from vocalis.core.security import authenticate


def test_a_scoped_route_resolves_one_dependency_for_its_key() -> None:
    app = create_app()
    route = next(
        r
        for r in app.routes
        if isinstance(r, APIRoute) and r.path == "/v1/org" and "GET" in r.methods
    )
    (auth,) = [d for d in route.dependant.dependencies if d.call is authenticate]
    assert auth.dependencies == []
    assert auth.own_oauth_scopes == ["org:read"]
    assert auth.request_param_name == "request"
    assert auth.security_scopes_param_name == "security_scopes"
    assert not auth.query_params and not auth.header_params


def test_the_document_shows_the_bearer_scheme_with_each_operations_scopes() -> None:
    document: dict[str, Any] = create_app().openapi()
    assert document["components"]["securitySchemes"] == {
        "HTTPBearer": {"type": "http", "description": "An API key `vk_…`.", "scheme": "bearer"}
    }
    assert document["paths"]["/v1/org"]["get"]["security"] == [{"HTTPBearer": ["org:read"]}]
    assert "security" not in document["paths"]["/healthz"]["get"]


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "vk_no_scheme"]
)
async def test_a_request_without_a_bearer_key_is_told_to_send_one(
    authorization: str | None,
) -> None:
    app = create_app()
    headers = {} if authorization is None else {"Authorization": authorization}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/v1/org", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "auth_missing"


def test_a_session_route_resolves_one_dependency_for_its_session() -> None:
    """`SessionDep` reads the backends from the request: no `backends_dependency` below."""
    app = create_app()
    route = next(
        r
        for r in app.routes
        if isinstance(r, APIRoute) and r.path == "/v1/agents" and "GET" in r.methods
    )
    (session,) = [d for d in route.dependant.dependencies if d.call is get_session]
    assert session.dependencies == []
    assert session.request_param_name == "request"
    assert session.scope == "function"


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"authorization", b"Bearer vk_abc")],
        [(b"authorization", b"bearer   vk_abc  ")],
        [(b"authorization", b"BEARER vk_abc")],
        [(b"authorization", b"Basic dXNlcjpwYXNz")],
        [(b"authorization", b"Bearer")],
        [(b"authorization", b"Bearer ")],
        [(b"authorization", b"vk_abc")],
        [(b"authorization", b"")],
        [(b"authorization", b"Bearer first"), (b"authorization", b"Bearer second")],
        [(b"x-other", b"Bearer vk_abc"), (b"authorization", b"Bearer caf\xe9")],
    ],
)
async def test_the_token_read_is_what_fastapis_http_bearer_reads(
    headers: list[tuple[bytes, bytes]],
) -> None:
    from fastapi.security import HTTPBearer
    from starlette.requests import Request

    from vocalis.core.security import bearer_token

    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}
    theirs = await HTTPBearer(auto_error=False)(Request(scope))
    assert bearer_token(scope) == (theirs.credentials if theirs is not None else None)

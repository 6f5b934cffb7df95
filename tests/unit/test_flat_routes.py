"""The app's routers are included flat (core/routes.py): each route is matched as the app's
own, and nothing else changes: the OpenAPI document is byte for byte the one FastAPI
builds from the routers included whole, every route carries what FastAPI derives for it in
the app (path, `responses`, dependency overrides…), and overrides reach the routes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIRouter, APIWebSocketRoute, iter_route_contexts

import vocalis.app as app_module
from vocalis.core import errors
from vocalis.core.problems import PROBLEM_RESPONSES
from vocalis.core.routes import include_flat
from vocalis.core.security import authenticate


def _included_whole(monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    """The app as FastAPI builds it with `include_router` alone."""
    with monkeypatch.context() as patched:
        patched.setattr(app_module, "include_flat", lambda app, router: app.include_router(router))
        return app_module.create_app()


def _document(app: FastAPI) -> bytes:
    return json.dumps(app.openapi(), indent=1).encode()


def test_the_openapi_document_is_the_one_of_the_routers_included_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    whole = _included_whole(monkeypatch)
    flat = app_module.create_app()
    assert any(getattr(r, "original_router", None) for r in whole.routes)
    assert not any(getattr(r, "original_router", None) for r in flat.routes)
    assert _document(flat) == _document(whole)


ATTRIBUTES = (
    "path",
    "path_format",
    "name",
    "methods",
    "tags",
    "responses",
    "status_code",
    "summary",
    "description",
    "response_description",
    "deprecated",
    "operation_id",
    "include_in_schema",
    "unique_id",
    "openapi_extra",
    "callbacks",
    "response_model",
    "dependencies",
)


def _described(route: Any) -> dict[str, Any]:
    described = {name: getattr(route, name, None) for name in ATTRIBUTES}
    endpoint = route.endpoint  # the app's own (/openapi.json…): a closure per app
    described["endpoint"] = (endpoint.__module__, endpoint.__qualname__)
    described["type"] = type(getattr(route, "original_route", route)).__name__
    described["overrides"] = getattr(route, "dependency_overrides_provider", None)
    described["response_class"] = repr(getattr(route, "response_class", None))
    return described


def _effective(route: Any, context: Any) -> Any:
    """What FastAPI serves for a route of an included router (the route itself else)."""
    if context is None:
        return route
    return context.starlette_route or context


def test_every_route_carries_what_fastapi_derives_for_it_in_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    whole = _included_whole(monkeypatch)
    flat = app_module.create_app()
    derived = [
        _described(_effective(context.route, context._route_context))
        for context in iter_route_contexts(whole.routes)
    ]
    own = [_described(route) for route in flat.routes]
    # The overrides provider is the app itself: each app its own.
    for described in derived:
        if described["overrides"] is whole:
            described["overrides"] = flat
    assert own == derived
    operations = [r for r in flat.routes if isinstance(r, APIRoute) and r.include_in_schema]
    assert operations
    for route in operations:
        assert route.path.startswith("/")
        assert set(PROBLEM_RESPONSES) <= set(route.responses)  # the app's `responses`


def test_a_router_with_anything_else_stays_included_whole() -> None:
    app = FastAPI()
    inner = APIRouter(prefix="/inner")
    inner.add_api_route("/x", lambda: {})
    outer = APIRouter(prefix="/v1")
    outer.add_api_route("/y", lambda: {})
    outer.include_router(inner)
    include_flat(app, outer)
    assert [getattr(r, "original_router", None) for r in app.routes][-1] is outer


def test_websocket_routes_are_flat_with_the_app_as_overrides_provider() -> None:
    app = app_module.create_app()
    sockets = [r for r in app.routes if isinstance(r, APIWebSocketRoute)]
    assert sockets
    assert {r.path for r in sockets} >= {"/v1/realtime"}


async def test_dependency_overrides_reach_the_flat_routes() -> None:
    app = app_module.create_app()

    async def refused() -> None:
        raise errors.PermissionDenied("overridden")

    app.dependency_overrides[authenticate] = refused
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/v1/org")
    assert response.status_code == 403
    assert response.json()["detail"] == "overridden"

"""CORS origins and the public base URL are settings that take effect."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.conftest import Api, make_settings, start_api


@pytest.fixture
async def cors_api(tmp_path: Path, redis_url: str) -> AsyncIterator[Api]:
    """An app that allows one browser origin and sits behind a public URL."""
    settings = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path}/vocalis.db",
        redis_url,
        cors_origins="https://app.example.com, https://admin.example.com",
        public_base_url="https://vocalis.example.com",
    )
    async for running in start_api(settings):
        yield running


async def test_an_allowed_origin_gets_a_preflight_answer(cors_api: Api) -> None:
    response = await cors_api.client.options(
        "/v1/agents",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"


async def test_a_browser_can_read_the_request_id_and_rate_limit_headers(cors_api: Api) -> None:
    tenant = await cors_api.tenant()
    response = await cors_api.client.get(
        "/v1/org", headers={**tenant.headers, "Origin": "https://admin.example.com"}
    )
    assert response.status_code == 200
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "x-request-id" in exposed and "ratelimit-remaining" in exposed


async def test_an_unlisted_origin_gets_no_cors_grant(cors_api: Api) -> None:
    response = await cors_api.client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_without_origins_cors_is_off(sqlite_api: Api) -> None:
    response = await sqlite_api.client.get(
        "/healthz", headers={"Origin": "https://app.example.com"}
    )
    assert "access-control-allow-origin" not in response.headers


async def test_the_public_base_url_is_the_openapi_server(cors_api: Api) -> None:
    document = (await cors_api.client.get("/openapi.json")).json()
    assert document["servers"] == [{"url": "https://vocalis.example.com"}]

"""Defects bench/load.py found, kept as regression tests (real SQLite and PostgreSQL).

- Concurrent PATCHes of one agent: on SQLite (which ignores FOR UPDATE) two requests read
  the same version and the second insert broke the (agent_id, version) key — a 500. Every
  PATCH now gets the next version from an atomic UPDATE … RETURNING.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.api.conftest import Api, make_settings, start_api
from tests.fixtures.services import create_pg_database, drop_pg_database


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
        return
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture
async def any_api(tmp_path: Path, database_url: str, redis_url: str) -> AsyncIterator[Api]:
    settings = make_settings(
        tmp_path, database_url, redis_url, rate_limit_per_minute=100_000, rate_limit_burst=100_000
    )
    async for running in start_api(settings):
        yield running


async def test_concurrent_patches_of_one_agent_all_succeed_with_consecutive_versions(
    any_api: Api,
) -> None:
    tenant = await any_api.tenant()
    made = await any_api.client.post(
        "/v1/agents", json={"name": "Racy", "instructions": "Help."}, headers=tenant.headers
    )
    assert made.status_code == 201
    agent_id = made.json()["id"]

    async def patch(n: int) -> int:
        response = await any_api.client.patch(
            f"/v1/agents/{agent_id}",
            json={"instructions": f"Help, take {n}."},
            headers=tenant.headers,
        )
        assert response.status_code == 200, response.text
        return int(response.json()["version"])

    versions = await asyncio.gather(*(patch(n) for n in range(12)))
    assert sorted(versions) == list(range(2, 14))
    current = await any_api.client.get(f"/v1/agents/{agent_id}", headers=tenant.headers)
    assert current.json()["version"] == 13

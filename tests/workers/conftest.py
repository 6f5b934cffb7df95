"""Fixtures for the worker-side tests: the app with the admin and webhook routes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.api.conftest import Api
from tests.fixtures.services import create_pg_database, drop_pg_database
from tests.webhooks.harness import fast_settings, start_app


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite file and real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
        return
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture
async def admin_api(tmp_path: Path, database_url: str, redis_url: str) -> AsyncIterator[Api]:
    """The app on SQLite and PostgreSQL."""
    async for api in start_app(fast_settings(tmp_path / "data", database_url, redis_url)):
        yield api

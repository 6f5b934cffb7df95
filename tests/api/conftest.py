"""An app on real backends: SQLite or PostgreSQL (migrated), the machine's Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures.services import create_pg_database, drop_pg_database
from vocalis.app import create_app
from vocalis.core.backends import Backends
from vocalis.core.migrate import upgrade
from vocalis.core.scopes import Role
from vocalis.orgs import service as orgs
from vocalis.settings import Settings
from vocalis.wiring import build_backends


@dataclass
class Tenant:
    """An organisation with an owner key, as the tests see it."""

    org_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class Api:
    """A running app with its HTTP client and helpers."""

    app: FastAPI
    client: httpx.AsyncClient
    backends: Backends
    settings: Settings

    async def tenant(
        self, name: str = "Acme", role: Role = Role.OWNER, scopes: list[str] | None = None
    ) -> Tenant:
        async with self.backends.database.session() as session:
            org, _ = await orgs.create_org(
                session=session, name=name, owner_email=f"{name.lower()}@example.test"
            )
            issued = await orgs.create_api_key(
                session=session, org_id=org.id, name="test", role=role, scopes=scopes
            )
        return Tenant(org.id, issued.plaintext)

    async def key_for(self, tenant: Tenant, role: Role, scopes: list[str] | None = None) -> Tenant:
        async with self.backends.database.session() as session:
            issued = await orgs.create_api_key(
                session=session, org_id=tenant.org_id, name=role.value, role=role, scopes=scopes
            )
        return Tenant(tenant.org_id, issued.plaintext)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The relational database behind the app: SQLite file and real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
        return
    url = create_pg_database()
    yield url
    drop_pg_database(url)


def make_settings(
    tmp_path: Path, database_url: str, redis_url: str, **overrides: object
) -> Settings:
    """Settings for a test app: everything on disk under tmp_path."""
    return Settings(
        env="test",
        data_dir=tmp_path / "data",
        database_url=database_url,
        redis_url=redis_url,
        **overrides,  # type: ignore[arg-type]
    )


async def start_api(settings: Settings) -> AsyncIterator[Api]:
    """Migrate, build backends, run the app's lifespan, yield a client."""
    await asyncio.to_thread(upgrade, settings.resolved_database_url)
    backends = await build_backends(settings)
    app = create_app(settings, backends=backends)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(app, client, backends, settings)
    await backends.close()


@pytest.fixture
async def api(tmp_path: Path, database_url: str, redis_url: str) -> AsyncIterator[Api]:
    """The app on SQLite and on PostgreSQL."""
    async for running in start_api(make_settings(tmp_path, database_url, redis_url)):
        yield running


@pytest.fixture
async def sqlite_api(tmp_path: Path, redis_url: str) -> AsyncIterator[Api]:
    """The app on SQLite only (for tests whose database makes no difference)."""
    url = f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
    async for running in start_api(make_settings(tmp_path, url, redis_url)):
        yield running

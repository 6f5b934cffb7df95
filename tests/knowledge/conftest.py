"""Fixtures: the app with the knowledge routers; a full stack with a real `vocalis worker`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.api.conftest import Api, Tenant
from tests.fixtures.redis_server import RedisServer
from tests.fixtures.services import create_pg_database, drop_pg_database
from tests.knowledge.harness import VocalisWorker, kb_settings, start_kb_app


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
async def kb_api(tmp_path: Path, database_url: str, redis_url: str) -> AsyncIterator[Api]:
    """The app on SQLite and on PostgreSQL, the machine's Redis as cache and broker; no
    worker (tests ingest in process with `ingest_now` when they need a ready document)."""
    async for api in start_kb_app(kb_settings(tmp_path / "data", database_url, redis_url)):
        yield api


@pytest.fixture
async def sqlite_kb_api(tmp_path: Path, redis_url: str) -> AsyncIterator[Api]:
    """The app on SQLite only (behaviour the database does not change)."""
    url = f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
    async for api in start_kb_app(kb_settings(tmp_path / "data", url, redis_url)):
        yield api


@dataclass
class Stack:
    """API in process and a real `vocalis worker` subprocess on a real Redis broker,
    sharing PostgreSQL, the data dir (objects, LanceDB) and Redis."""

    api: Api
    worker: VocalisWorker

    async def tenant(self, name: str) -> Tenant:
        return await self.api.tenant(name)


async def open_stack(root: Path, **overrides: object) -> AsyncIterator[Stack]:
    """API + worker on a private redis-server and a fresh PostgreSQL database."""
    redis = RedisServer(root / "redis")
    redis.start()
    pg = await asyncio.to_thread(create_pg_database)
    settings = kb_settings(root / "data", pg, redis.url, **overrides)
    worker = VocalisWorker(settings, root / "worker.log")
    try:
        async for api in start_kb_app(settings):
            await asyncio.to_thread(worker.start)
            try:
                yield Stack(api, worker)
            finally:
                await asyncio.to_thread(worker.stop)
    finally:
        await asyncio.to_thread(drop_pg_database, pg)
        redis.stop()


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One stack per test module (a worker takes seconds to start)."""
    async for running in open_stack(tmp_path_factory.mktemp("kb-stack")):
        yield running

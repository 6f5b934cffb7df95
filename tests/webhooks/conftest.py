"""Fixtures: the app with webhook routes; a full stack with a real Celery worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.api.conftest import Api, Tenant
from tests.fixtures.celery_worker import CeleryWorker
from tests.fixtures.redis_server import RedisServer, free_port
from tests.fixtures.services import create_pg_database, drop_pg_database
from tests.webhooks.harness import fast_settings, start_app, worker_env
from tests.webhooks.receiver import Receiver, running_receiver


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
def receiver() -> Iterator[Receiver]:
    """A webhook receiver verifying every signature."""
    with running_receiver() as running:
        yield running


@pytest.fixture
async def wh_api(tmp_path: Path, database_url: str, redis_url: str) -> AsyncIterator[Api]:
    """The app (SQLite and PostgreSQL) with 127.0.0.1 allow-listed; no worker."""
    async for api in start_app(fast_settings(tmp_path / "data", database_url, redis_url)):
        yield api


@pytest.fixture
async def sqlite_wh_api(tmp_path: Path, redis_url: str) -> AsyncIterator[Api]:
    """The app on SQLite only, 127.0.0.1 allow-listed; no worker."""
    url = f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
    async for api in start_app(fast_settings(tmp_path / "data", url, redis_url)):
        yield api


@dataclass
class Stack:
    """API, real worker (with beat) on a private broker, app Redis, PostgreSQL, receiver."""

    api: Api
    worker: CeleryWorker
    broker: RedisServer
    receiver: Receiver
    metrics_url: str

    async def tenant(self, name: str) -> Tenant:
        return await self.api.tenant(name)


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One stack per test module (starting a worker costs seconds)."""
    root = tmp_path_factory.mktemp("stack")
    broker = RedisServer(root / "broker")
    app_redis = RedisServer(root / "app-redis")
    broker.start()
    app_redis.start()
    pg = await asyncio.to_thread(create_pg_database)
    metrics_port = free_port()
    settings = fast_settings(
        root / "data",
        pg,
        app_redis.url,
        broker_url=broker.url,
        worker_metrics_port=metrics_port,
    )
    worker = CeleryWorker(worker_env(settings), root / "worker")
    try:
        with running_receiver() as receiver:
            async for api in start_app(settings):
                worker.start()
                try:
                    yield Stack(api, worker, broker, receiver, f"http://127.0.0.1:{metrics_port}")
                finally:
                    worker.stop()
    finally:
        await asyncio.to_thread(drop_pg_database, pg)
        broker.stop()
        app_redis.stop()

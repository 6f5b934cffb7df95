"""Migrations upgrade and downgrade cleanly on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import inspect

from tests.fixtures.services import create_pg_database, drop_pg_database
from vocalis.core.all_models import load_all
from vocalis.core.db import create_engine
from vocalis.core.migrate import downgrade, upgrade


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    await engine.dispose()
    return names - {"alembic_version"}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_upgrade_creates_every_table_and_downgrade_removes_them(
    backend: str, tmp_path: Path
) -> None:
    url = (
        f"sqlite+aiosqlite:///{tmp_path}/m.db"
        if backend == "sqlite"
        else await asyncio.to_thread(create_pg_database)
    )
    try:
        await asyncio.to_thread(upgrade, url)
        assert await _tables(url) == set(load_all().metadata.tables)
        await asyncio.to_thread(downgrade, url, "base")
        assert await _tables(url) == set()
        await asyncio.to_thread(upgrade, url)  # and back up again
        assert await _tables(url) == set(load_all().metadata.tables)
    finally:
        if backend == "postgres":
            await asyncio.to_thread(drop_pg_database, url)


async def test_models_and_migrations_agree(tmp_path: Path) -> None:
    """Autogenerate against a migrated database finds nothing to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    url = await asyncio.to_thread(create_pg_database)
    try:
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(url)
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), load_all().metadata
                )
            )
        await engine.dispose()
        assert diff == []
    finally:
        await asyncio.to_thread(drop_pg_database, url)

"""Alembic environment: async engines, batch mode on SQLite so ALTERs work there too."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from vocalis.core.all_models import load_all
from vocalis.core.db import create_engine

target_metadata = load_all().metadata
config = context.config


# Tables other libraries own in the same database (LangGraph checkpoints) are not ours to diff.
FOREIGN_TABLE_PREFIXES = ("checkpoint",)


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    return not (
        type_ == "table"
        and reflected
        and compare_to is None
        and (name or "").startswith(FOREIGN_TABLE_PREFIXES)
    )


def _run(connection: Connection) -> None:
    context.configure(
        include_object=_include_object,
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


def run_migrations_online() -> None:
    """Run migrations with an async engine (works inside or outside a running loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_run_async())
        return
    raise RuntimeError("call vocalis.core.migrate from a thread, not inside the event loop")


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()

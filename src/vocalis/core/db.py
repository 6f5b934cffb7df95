"""Relational database: declarative base, engine and session factory.

The same models and migrations run on PostgreSQL (production) and SQLite (embedded).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import JSON, Connection, DateTime, Engine, MetaData, String, event, make_url
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from vocalis.core.tracing import instrument_engine

T = TypeVar("T")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Timezone-aware now in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored with time zone, always returned aware in UTC (also on SQLite)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    """Base of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class OrgScoped:
    """Mixin for tables whose rows belong to one organisation."""

    org_id: Mapped[str] = mapped_column(String(40), index=True)


class Timestamps:
    """Mixin adding created/updated timestamps."""

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL: readers never block the writer, and several processes (`vocalis serve --workers
    # N`, the Celery worker) share the file; the busy timeout makes a writer wait for
    # another process's write instead of failing.
    cur.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL syncs at checkpoints, not at every commit: a power cut may lose
    # the last commits, never corrupt the file (one fsync per commit otherwise).
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL and foreign keys on every connection."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def sqlite_file(url: str) -> bool:
    """Whether an SQLite URL names a file (not an in-memory database)."""
    path = make_url(url).database
    return bool(path) and path != ":memory:" and not str(path).startswith("file::memory:")


def sync_sqlite_engine(url: str) -> Engine:
    """A synchronous engine on the same SQLite file as `url`, with the same pragmas; for
    work run in a thread of its own (one thread switch per operation)."""
    sync_url = make_url(url).set(drivername="sqlite+pysqlite")
    engine = sa_create_engine(sync_url, connect_args={"timeout": 30, "check_same_thread": False})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class Database:
    """An engine plus its session factory, and a one-hop path for small reads."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        instrument_engine(self.engine)  # a client span per statement inside a trace
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        # On an SQLite file, `read` runs on a synchronous engine in a thread of its own:
        # one thread switch per read, where aiosqlite switches for every cursor call
        # (cursor, execute, fetch, close, the pool's reset: five or six per ORM read).
        self._reader: Engine | None = None
        self._reader_thread: ThreadPoolExecutor | None = None
        if url.startswith("sqlite") and sqlite_file(url):
            self._reader = sync_sqlite_engine(url)
            instrument_engine(self._reader)
            self._reader_thread = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="vocalis-db-read"
            )

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run `work` (statements that only read) on a connection in one hop, outside any
        ORM session: for single-row reads on the hot path. It sees every committed write
        (WAL readers never wait for writers); nothing it does is committed. Statements
        still get their client spans (the caller's context goes with it to the thread)."""
        if self._reader is not None:
            engine = self._reader

            def job() -> T:
                with engine.connect() as conn:
                    return work(conn)

            context = contextvars.copy_context()
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._reader_thread, context.run, job)
        async with self.engine.connect() as aconn:
            return await aconn.run_sync(work)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session that commits on success and rolls back on error."""
        async with self.sessionmaker() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        from sqlalchemy import text

        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        """Close every pooled connection (and the reader's thread)."""
        if self._reader_thread is not None:
            self._reader_thread.shutdown(wait=True)
            self._reader_thread = None
        if self._reader is not None:
            self._reader.dispose()
            self._reader = None
        await self.engine.dispose()

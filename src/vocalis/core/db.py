"""Relational database: declarative base, engine and session factory.

The same models and migrations run on PostgreSQL (production) and SQLite (embedded).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sqlite3
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from queue import SimpleQueue
from typing import Any, Generic, TypeVar, cast

from opentelemetry import trace
from sqlalchemy import (
    JSON,
    Connection,
    DateTime,
    Dialect,
    Engine,
    MetaData,
    Select,
    String,
    event,
    make_url,
)
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.exc import OperationalError
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
R = TypeVar("R", bound=tuple[Any, ...])

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


class DatabaseClosed(RuntimeError):
    """A read after `Database.dispose` began."""


# A read handed to the reader thread: the caller's loop and future, its context, the work
# (None: stop, resolving the future once the connection is closed).
_Job = tuple[
    asyncio.AbstractEventLoop | None,
    "asyncio.Future[Any] | None",
    contextvars.Context | None,
    Callable[[Connection], Any] | None,
]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled meanwhile
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _reply(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any, error: Any
) -> None:
    with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits any more
        loop.call_soon_threadsafe(_settle, future, result, error)


class _Reader:
    """`Database.read` on an SQLite file: a thread of its own, fed by a queue, answering on
    the caller's loop (`call_soon_threadsafe`; no executor, no future chaining), on a
    connection it keeps open (no pool checkout and reset-on-return per read). After each
    read the connection's transaction is rolled back, so no snapshot outlives its read; an
    error drops the connection. Reads run one at a time, in the order they came. Statements
    are client spans of the caller's span when it records (its context goes with the work);
    otherwise the instrumentation returns at once (`tracing.instrument_engine`)."""

    def __init__(self, url: str) -> None:
        self.engine = sync_sqlite_engine(url)
        instrument_engine(self.engine)
        self._conn: Connection | None = None  # the thread's
        self._jobs: SimpleQueue[_Job] = SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None  # started by the first read
        self._closed = False

    def submit(self, work: Callable[[Connection], T]) -> asyncio.Future[T]:
        """Queue `work`, run in a copy of the caller's context; its future on this loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job: _Job = (loop, future, contextvars.copy_context(), work)
        with self._lock:
            if self._closed:
                raise DatabaseClosed("the database is closed (Database.dispose)")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="vocalis-db-read", daemon=True
                )
                self._thread.start()
            self._jobs.put(job)
        return future

    @property
    def closed(self) -> bool:
        """Whether `stop` has been called (reads are refused)."""
        return self._closed

    def stop(self, last: _Job = (None, None, None, None)) -> threading.Thread | None:
        """Refuse new reads; the thread serves those queued, closes its connection, settles
        `last`'s future and ends. Returns the thread (None: it never started, or stopped)."""
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            thread, self._thread = self._thread, None
            if thread is not None:
                self._jobs.put(last)
        return thread

    async def close(self) -> None:
        """`stop`, then wait without blocking the loop until the thread has ended."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        thread = self.stop((asyncio.get_running_loop(), done, None, None))
        if thread is not None:
            await done
            thread.join()  # returns at once: the thread settled `done` as it ended

    def _serve(self) -> None:
        jobs = self._jobs
        while True:
            loop, future, context, work = jobs.get()
            if work is None:
                self._drop()
                if loop is not None and future is not None:
                    _reply(loop, future, None, None)
                return
            assert loop is not None and future is not None and context is not None
            if future.done():  # cancelled while queued
                continue
            try:
                result = context.run(self._read, work)
            except BaseException as error:
                _reply(loop, future, None, error)
            else:
                _reply(loop, future, result, None)

    def _read(self, work: Callable[[Connection], T]) -> T:
        conn = self._conn
        if conn is None or conn.invalidated:
            conn = self._conn = self.engine.connect()
        try:
            result = work(conn)
            conn.rollback()  # the read's snapshot ends with it (WAL: the next sees newer)
        except BaseException:
            self._drop()  # rolled back, and never reused
            raise
        return result

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken one is dropped all the same
                conn.close()

    def dispose(self) -> None:
        """Close the engine's pool (after `close`)."""
        self.engine.dispose()


@dataclass(frozen=True)
class _Plan:
    """A `RowQuery` compiled for one dialect: the SQL, where each positional parameter comes
    from (a caller's parameter or the statement's own value) with its type's bind
    processor, and each result column's processor."""

    sql: str
    binds: tuple[tuple[str, Any, Callable[[Any], Any] | None], ...]
    results: tuple[Callable[[Any], Any] | None, ...]


_NO_VALUE = object()


class RowQuery(Generic[R]):
    """A SELECT on the hot path answering at most one row (`Database.first`), as `row`: a
    `typing.NamedTuple` whose fields are the selected columns, in order, whichever way the
    statement ran.

    On an SQLite file, read on the loop while no span records, it runs on the driver's own
    connection: the SQL compiled once per dialect, parameters and values converted by the
    columns' own SQLAlchemy types (what the engine does: dates parsed, JSON decoded, flags
    made booleans), without the engine's per-statement work — execution context, cursor
    result, events: ~2/3 of a one-row read's CPU (issue 11). Under a recording span it runs
    through the engine, so the statement keeps its client span."""

    def __init__(self, statement: Select[*tuple[Any, ...]], row: type[R]) -> None:
        columns = list(statement.selected_columns)
        fields = getattr(row, "_fields", None)
        if fields is None or len(fields) != len(columns):
            raise ValueError(f"{row.__name__} must be a NamedTuple of {len(columns)} fields")
        self.statement = statement
        self.row = row
        self._plans: dict[str, _Plan] = {}

    def plan(self, dialect: Dialect) -> _Plan:
        """The statement compiled for `dialect` (positional parameters), made once."""
        plan = self._plans.get(dialect.name)
        if plan is None:
            compiled = self.statement.compile(dialect=dialect)
            if compiled.positiontup is None:
                raise ValueError(f"{dialect.name} does not take positional parameters")
            binds = []
            for name in compiled.positiontup:
                bind = compiled.binds[name]
                if bind.expanding:
                    raise ValueError("RowQuery takes no expanding (IN) parameters")
                own = _NO_VALUE if bind.required else bind.effective_value
                binds.append(
                    (bind.key, own, bind.type.dialect_impl(dialect).bind_processor(dialect))
                )
            results = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in self.statement.selected_columns
            )
            plan = self._plans[dialect.name] = _Plan(compiled.string, tuple(binds), results)
        return plan

    def arguments(self, plan: _Plan, params: Mapping[str, Any]) -> list[Any]:
        """The positional parameters of one execution."""
        out = []
        for key, own, process in plan.binds:
            value = params[key] if own is _NO_VALUE else params.get(key, own)
            out.append(process(value) if process is not None else value)
        return out

    def make(self, plan: _Plan, values: tuple[Any, ...]) -> R:
        """A driver's row as `row`, each value through its column's processor."""
        return self.row._make(  # type: ignore[attr-defined]
            v if p is None else p(v) for p, v in zip(plan.results, values, strict=True)
        )


class _InlineReader:
    """`Database.read` on an SQLite file, on the event loop itself, where it cannot wait.

    A single-row read that SQLite answers from its page cache takes ~15-30 µs of CPU —
    less than handing it to the reader thread and back (~25 µs of CPU in queue, wake-up
    and reply, plus two GIL hand-overs; issue 11). This connection's busy timeout is 0, so
    a read that would have to wait for a lock (in WAL mode only in rare cases: another
    connection recovering the WAL or restarting it) fails at once with `SQLITE_BUSY` and
    goes to the reader thread, which waits as long as the engine's busy timeout allows;
    nothing here ever sleeps on the loop. Like the thread's, the connection is kept open,
    its transaction rolled back after each read (no snapshot outlives its read), and
    dropped after any error. It is opened by the first read (the file open and pragmas,
    once per process, with no busy wait either: a busy file sends that read to the thread
    too). Its statements are client spans under a recording caller, as on the thread."""

    def __init__(self, url: str) -> None:
        sync_url = make_url(url).set(drivername="sqlite+pysqlite")
        self.engine = sa_create_engine(sync_url, connect_args={"timeout": 0})
        event.listen(self.engine, "connect", _sqlite_pragmas)
        event.listen(self.engine, "connect", _no_busy_wait)  # after the pragmas' 30 s
        instrument_engine(self.engine)
        self._conn: Connection | None = None

    def read(self, work: Callable[[Connection], T]) -> tuple[bool, T | None]:
        """(True, result), or (False, None) when SQLite was busy: nothing was read."""
        try:
            conn = self._conn
            if conn is None or conn.invalidated:
                conn = self._conn = self.engine.connect()
            result = work(conn)
            conn.rollback()
        except OperationalError as error:
            self.close()
            if _busy(error):
                return False, None  # to the reader thread, which may wait
            raise
        except BaseException:
            self.close()  # rolled back, and never reused
            raise
        return True, result

    def first(self, query: RowQuery[R], params: Mapping[str, Any]) -> tuple[bool, R | None]:
        """(True, the row or None), or (False, None) when the driver refused (SQLite busy,
        or any other error: the caller runs it through the engine, which raises its own)."""
        try:
            conn = self._conn
            if conn is None or conn.invalidated:
                conn = self._conn = self.engine.connect()
            plan = query.plan(self.engine.dialect)
            raw = conn.connection.driver_connection
            assert raw is not None
            cursor = raw.execute(plan.sql, query.arguments(plan, params))
            try:
                values = cursor.fetchone()
            finally:
                cursor.close()  # the statement is reset: no read snapshot stays open
        except (sqlite3.Error, OperationalError):
            self.close()
            return False, None
        except BaseException:
            self.close()
            raise
        return True, (None if values is None else query.make(plan, values))

    def close(self) -> None:
        """Close the connection (the next read opens another)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def dispose(self) -> None:
        """Close the connection and the engine's pool."""
        self.close()
        self.engine.dispose()


def _no_busy_wait(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA busy_timeout=0")


def _busy(error: OperationalError) -> bool:
    """Whether SQLite refused for a lock (SQLITE_BUSY or SQLITE_LOCKED), not for the SQL."""
    code = getattr(error.orig, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (any extended code)
    text = str(error.orig).lower()
    return "database is locked" in text or "database table is locked" in text


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
        self._reader: _Reader | None = None
        self._inline: _InlineReader | None = None
        if url.startswith("sqlite") and sqlite_file(url):
            self._reader = _Reader(url)
            self._inline = _InlineReader(url)
            # A Database dropped without `dispose` (a test's) still ends its thread.
            weakref.finalize(self, self._reader.stop)

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run `work` (statements that only read, results consumed) on a connection in one
        hop, outside any ORM session: for single-row reads on the hot path. It sees every
        committed write (WAL readers never wait for writers; no transaction stays open
        between reads); nothing it does is committed. Statements still get their client
        spans (the caller's context goes with it to the thread). On an SQLite file a read
        runs on the loop on a kept connection that never waits for a lock
        (`_InlineReader`); one that finds the file busy queues on one thread with one kept
        connection, which waits; after `dispose` reads raise `DatabaseClosed`."""
        if self._reader is not None:
            if self._inline is not None and not self._reader.closed:
                answered, result = self._inline.read(work)
                if answered:
                    return cast(T, result)
            return await self._reader.submit(work)
        async with self.engine.connect() as aconn:
            return await aconn.run_sync(work)

    async def first(self, query: RowQuery[R], params: Mapping[str, Any]) -> R | None:
        """The first row of `query` (None when there is none): `read`'s one-row case, leaner
        on an SQLite file when no span records (`RowQuery`); same rows either way."""
        if (
            self._inline is not None
            and self._reader is not None
            and not self._reader.closed
            and not trace.get_current_span().is_recording()
        ):
            answered, row = self._inline.first(query, params)
            if answered:
                return row

        def work(conn: Connection) -> R | None:
            found = conn.execute(query.statement, params).first()
            return None if found is None else query.row._make(found)  # type: ignore[attr-defined]

        return await self.read(work)

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
        """Close every pooled connection; on SQLite the reader's thread serves the reads
        already queued, closes its connection and ends (later reads: `DatabaseClosed`)."""
        if self._reader is not None:
            if self._inline is not None:
                self._inline.dispose()
            await self._reader.close()
            self._reader.dispose()
        await self.engine.dispose()

"""`Database.read` on an SQLite file: on the event loop with a kept connection that never
waits for a lock, else (SQLite busy) on one reader thread with a kept connection. A read
sees a write committed by another connection just before it and holds no snapshot
afterwards; a failing read raises and the next works; a read that finds the file locked
goes to the thread without blocking the loop and completes once the lock is gone;
concurrent reads on the thread all complete, in order; the caller's context (trace context
included) goes with the work; `dispose` serves the reads already queued, then ends the
thread, and a later read fails at once."""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from tests.fixtures.spans import collect_spans
from vocalis.core.db import Database, DatabaseClosed, _Reader
from vocalis.core.tracing import tracer

_VALUE = text("SELECT v FROM t WHERE id = 1")
_exporter = InMemorySpanExporter()


def _value(conn: Connection) -> int:
    return int(conn.execute(_VALUE).scalar_one())


@pytest.fixture
def path(tmp_path: Path) -> Path:
    file = tmp_path / "read.db"
    with sqlite3.connect(file) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
        conn.execute("INSERT INTO t VALUES (1, 0)")
    return file


@pytest.fixture
async def db(path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{path}")
    yield database
    await database.dispose()


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    with collect_spans(_exporter):
        yield _exporter


async def test_a_read_sees_the_write_committed_just_before_it(db: Database, path: Path) -> None:
    other = sqlite3.connect(path, isolation_level=None)
    try:
        for value in range(1, 8):
            other.execute("UPDATE t SET v = ? WHERE id = 1", (value,))  # autocommit
            assert await db.read(_value) == value
            # No snapshot is left open between reads: a truncating checkpoint, which must
            # wait for every reader, is not blocked (busy = 0).
            busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            assert busy == 0
    finally:
        other.close()


async def test_a_failing_read_raises_and_the_next_works(db: Database) -> None:
    def fails(conn: Connection) -> None:
        conn.execute(_VALUE)
        raise ValueError("boom")

    assert await db.read(_value) == 0
    with pytest.raises(ValueError, match="boom"):
        await db.read(fails)
    assert await db.read(_value) == 0
    with pytest.raises(OperationalError):
        await db.read(lambda conn: conn.execute(text("SELECT * FROM missing")).all())
    assert await db.read(_value) == 0


def _thread(db: Database) -> _Reader:
    assert db._reader is not None
    return db._reader


async def test_a_read_runs_on_the_loop_unless_the_file_is_locked(db: Database, path: Path) -> None:
    def where(conn: Connection) -> tuple[int, str]:
        return _value(conn), threading.current_thread().name

    assert await db.read(where) == (0, threading.current_thread().name)
    # A connection in exclusive locking mode that has written keeps every other connection
    # out, even in WAL mode (it can take that mode only while no other is open): the
    # loop's connection fails at once (busy timeout 0), the read goes to the thread, which
    # waits for the lock without blocking the loop.
    assert db._inline is not None
    db._inline.dispose()  # its connection closed, not only back in the pool
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA locking_mode=EXCLUSIVE")
    other.execute("UPDATE t SET v = 5 WHERE id = 1")
    try:
        read = asyncio.ensure_future(db.read(where))
        ticks = 0
        while ticks < 20:  # the loop keeps running while the read waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert not read.done()
    finally:
        other.execute("PRAGMA locking_mode=NORMAL")
        other.execute("SELECT v FROM t").fetchall()  # the mode change takes effect here
        other.close()
    assert await asyncio.wait_for(read, 10) == (5, "vocalis-db-read")
    assert await db.read(where) == (5, threading.current_thread().name)  # back on the loop


async def test_concurrent_reads_all_complete_in_order_on_one_thread(db: Database) -> None:
    order: list[int] = []

    def work(i: int) -> tuple[int, int, str]:
        def run(conn: Connection) -> tuple[int, int, str]:
            order.append(i)
            return i, _value(conn), threading.current_thread().name

        return run

    results = await asyncio.gather(*(_thread(db).submit(work(i)) for i in range(200)))
    assert [(i, v) for i, v, _ in results] == [(i, 0) for i in range(200)]
    assert order == list(range(200))
    assert {name for _, _, name in results} == {"vocalis-db-read"}
    assert threading.current_thread().name != "vocalis-db-read"


async def test_a_cancelled_read_does_not_stop_the_others(db: Database) -> None:
    gate = threading.Event()
    blocked = asyncio.ensure_future(_thread(db).submit(lambda conn: gate.wait(5)))
    cancelled = asyncio.ensure_future(_thread(db).submit(_value))
    after = asyncio.ensure_future(_thread(db).submit(_value))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    gate.set()
    assert await blocked is True
    assert await after == 0
    assert cancelled.cancelled()


async def test_the_callers_context_goes_with_the_work(db: Database) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    assert await db.read(lambda conn: var.get()) == "caller"
    assert await _thread(db).submit(lambda conn: var.get()) == "caller"


async def test_statements_are_client_spans_of_a_recorded_caller(
    db: Database, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    with tracer().start_as_current_span("parent") as parent:
        assert await db.read(_value) == 0
    assert await db.read(_value) == 0  # outside any trace: no span
    (client,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert client.parent is not None
    assert client.parent.span_id == parent.get_span_context().span_id
    attributes = client.attributes or {}
    assert attributes.get("db.system", attributes.get("db.system.name")) == "sqlite"


async def test_dispose_serves_the_queued_reads_then_ends_the_thread(path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{path}")
    thread = await _thread(db).submit(lambda conn: threading.current_thread())
    assert thread.is_alive()
    queued = [asyncio.ensure_future(_thread(db).submit(_value)) for _ in range(20)]
    await asyncio.sleep(0)  # the reads are queued
    await db.dispose()
    assert [await read for read in queued] == [0] * 20
    assert not thread.is_alive()
    with pytest.raises(DatabaseClosed):
        await db.read(_value)
    await db.dispose()  # twice: nothing to do


async def test_a_database_never_read_disposes_at_once(path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{path}")
    await asyncio.wait_for(db.dispose(), 5)
    with pytest.raises(DatabaseClosed):
        await db.read(_value)

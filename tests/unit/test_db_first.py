"""`Database.first` with a `RowQuery`: on an SQLite file, read on the loop while no span
records, the statement runs on the driver's connection with the columns' own types
converting parameters and values; under a recording span, or on PostgreSQL, it runs through
the engine. Both ways give the same named-tuple rows (dates as aware datetimes, JSON
decoded, booleans, NULLs, the statement's own bound values honoured), None when nothing
matches; a locked file sends the read to the reader thread without blocking the loop; the
statement is a client span of a recorded caller; a row type that does not fit is refused."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import JSON, Boolean, Column, Integer, MetaData, String, Table, bindparam, select
from sqlalchemy.ext.asyncio import create_async_engine

from tests.fixtures.services import create_pg_database, drop_pg_database
from tests.fixtures.spans import collect_spans
from vocalis.core.db import Database, RowQuery, UTCDateTime
from vocalis.core.tracing import tracer

_metadata = MetaData()
_items = Table(
    "items",
    _metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("count", Integer, nullable=True),
    Column("active", Boolean, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)
_CREATED = datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=UTC)
_ROWS: list[dict[str, Any]] = [
    {"id": "a", "kind": "live", "count": 3, "active": True, "tags": ["x", {"y": 1}]},
    {"id": "b", "kind": "live", "count": None, "active": False, "tags": {}},
    {"id": "c", "kind": "gone", "count": 7, "active": True, "tags": []},
]


class Item(NamedTuple):
    id: str
    amount: int | None
    active: bool
    tags: Any
    created_at: datetime


# A caller's parameter and a value of the statement's own (`kind == "live"`).
_LIVE = RowQuery(
    select(_items.c.id, _items.c.count, _items.c.active, _items.c.tags, _items.c.created_at).where(
        _items.c.id == bindparam("item_id"), _items.c.kind == "live"
    ),
    Item,
)
_exporter = InMemorySpanExporter()


async def _fill(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(_metadata.create_all)
        await conn.execute(_items.insert(), [row | {"created_at": _CREATED} for row in _ROWS])
    await engine.dispose()


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'first.db'}"
    await _fill(url)
    database = Database(url)
    yield database
    await database.dispose()


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    with collect_spans(_exporter):
        yield _exporter


def _expected(item_id: str) -> Item | None:
    row = next(r for r in _ROWS if r["id"] == item_id)
    if row["kind"] != "live":
        return None
    return Item(row["id"], row["count"], row["active"], row["tags"], _CREATED)


async def _all(db: Database) -> dict[str, Item | None]:
    return {r["id"]: await db.first(_LIVE, {"item_id": r["id"]}) for r in [*_ROWS, {"id": "z"}]}


async def test_the_driver_path_and_the_engine_give_the_same_rows(
    sqlite_db: Database, spans: InMemorySpanExporter
) -> None:
    inline = await _all(sqlite_db)  # no span records: the driver's connection
    assert sqlite_db._reader is not None and sqlite_db._reader._thread is None  # none fell back
    spans.clear()
    with tracer().start_as_current_span("parent"):
        traced = await _all(sqlite_db)  # a recording span: through the engine
    expected = {key: (_expected(key) if key != "z" else None) for key in inline}
    assert inline == traced == expected
    item = inline["a"]
    assert isinstance(item, Item)
    assert item.created_at.tzinfo is not None and item.created_at == _CREATED
    assert item.active is True and inline["b"] is not None and inline["b"].active is False
    assert item.tags == ["x", {"y": 1}]
    clients = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert len(clients) == 4  # one per statement of the traced reads, none of the others


async def test_a_locked_file_sends_the_read_to_the_thread(
    sqlite_db: Database, tmp_path: Path
) -> None:
    assert await sqlite_db.first(_LIVE, {"item_id": "a"}) == _expected("a")
    assert sqlite_db._inline is not None
    sqlite_db._inline.dispose()  # its connection closed, not only back in the pool
    other = sqlite3.connect(tmp_path / "first.db", isolation_level=None)
    other.execute("PRAGMA locking_mode=EXCLUSIVE")
    other.execute("UPDATE items SET count = 9 WHERE id = 'a'")
    try:
        read = asyncio.ensure_future(sqlite_db.first(_LIVE, {"item_id": "a"}))
        for _ in range(20):  # the loop keeps running while the read waits
            await asyncio.sleep(0.01)
        assert not read.done()
    finally:
        other.execute("PRAGMA locking_mode=NORMAL")
        other.execute("SELECT count FROM items").fetchall()  # the mode change takes effect
        other.close()
    row = await asyncio.wait_for(read, 10)
    assert row is not None and row.amount == 9
    again = await sqlite_db.first(_LIVE, {"item_id": "a"})  # back on the loop
    assert again == row


async def test_postgresql_gives_the_same_rows() -> None:
    url = await asyncio.to_thread(create_pg_database)
    try:
        await _fill(url)
        database = Database(url)
        try:
            assert await _all(database) == {
                key: (_expected(key) if key != "z" else None) for key in ("a", "b", "c", "z")
            }
        finally:
            await database.dispose()
    finally:
        await asyncio.to_thread(drop_pg_database, url)


def test_a_row_type_that_does_not_fit_is_refused() -> None:
    class Short(NamedTuple):
        id: str

    with pytest.raises(ValueError, match="NamedTuple of 5 fields"):
        RowQuery(_LIVE.statement, Short)
    with pytest.raises(ValueError, match="NamedTuple"):
        RowQuery(_LIVE.statement, tuple)

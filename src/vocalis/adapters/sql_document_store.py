"""Document store as a JSON table in the relational database: the embedded default.

Every document is one row of `documents` (collection, org_id, id, JSON body). Filters are
translated to SQL over JSON paths with MongoDB's semantics for the port's subset: values
are compared only with values of the same JSON type (numbers as numbers, strings by code
point), a missing field equals `None`, and `$ne`/`$nin` match documents without the field.
Updates are read-modify-write under a write lock (`SELECT ... FOR UPDATE` on PostgreSQL,
`BEGIN IMMEDIATE` on SQLite), so concurrent `$inc`/`$push` never lose writes.
"""

from __future__ import annotations

import asyncio
import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Engine,
    Float,
    Index,
    String,
    UniqueConstraint,
    and_,
    bindparam,
    case,
    delete,
    false,
    func,
    insert,
    literal,
    make_url,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import UnaryExpression

from vocalis.core.db import Base, Database, sqlite_file, sync_sqlite_engine, utcnow
from vocalis.core.sqlite_writer import WriterLock
from vocalis.ports.document_store import Document, DuplicateKey, Filter, Inserts, Sort

T = TypeVar("T")
TABLE_NAME = "json_documents"
# Fields kept in columns rather than in the JSON body.
ID_FIELD = "_id"
ORG_FIELD = "org_id"
Scalar = str | int | float | bool | None
_SCALARS = (str, int, float, bool, type(None))
_RANGE_OPS = {"$gt", "$gte", "$lt", "$lte"}


class StoredDocument(Base):
    """One JSON document of one organisation in one collection."""

    __tablename__ = TABLE_NAME

    collection: Mapped[str] = mapped_column(String(100), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        # `_id` is unique per collection across organisations, exactly as in MongoDB, so
        # both adapters raise DuplicateKey for the same inserts.
        UniqueConstraint("collection", "id"),
        # The primary key already serves (collection, org_id) lookups; this one serves the
        # default order (insertion time) of finds within one organisation's collection.
        Index(
            "ix_json_documents_collection_org_id_created_at", "collection", "org_id", "created_at"
        ),
    )


# --- JSON field access ------------------------------------------------------------------
# Kinds of JSON value, named as the contract needs them: booleans are split by value and
# an absent path is its own kind, so a type test is `kind IN (...)`. SQLite's json_type
# names for each:
_SQLITE_KINDS = {
    "missing": ("missing",),
    "null": ("null",),
    "number": ("integer", "real"),
    "string": ("text",),
    "true": ("true",),
    "false": ("false",),
    "object": ("object",),
    "array": ("array",),
}


class _Field(ABC):
    """A filterable, sortable field: typed views of its value that are NULL on mismatch."""

    def __init__(self, dialect: str) -> None:
        self._dialect = dialect

    @abstractmethod
    def kind_in(self, kinds: set[str]) -> ColumnElement[bool]:
        """Whether the value is one of these JSON types."""

    def known(self, comparison: ColumnElement[bool]) -> ColumnElement[bool]:
        """The comparison made false, never NULL, when the value has another type."""
        return func.coalesce(comparison, false())

    @abstractmethod
    def number(self) -> ColumnElement[float]:
        """The value as a number, NULL when it is not one."""

    @abstractmethod
    def string(self) -> ColumnElement[str]:
        """The value as a string, NULL when it is not one."""

    def ordered_string(self) -> ColumnElement[str]:
        """The string value for ordering: by code point like MongoDB, not by locale."""
        if self._dialect == "postgresql":
            return self.string().collate("C")
        return self.string()  # SQLite's default collation is already binary

    def sort_keys(self) -> list[ColumnElement[Any]]:
        """Keys that order values as MongoDB does: null < numbers < strings < ... < booleans."""
        rank = case(
            (self.kind_in({"missing", "null"}), 0),
            (self.kind_in({"number"}), 1),
            (self.kind_in({"string"}), 2),
            (self.kind_in({"object"}), 3),
            (self.kind_in({"array"}), 4),
            else_=5,
        )
        flag = case((self.kind_in({"true"}), 1), else_=0)
        return [rank, self.number(), self.ordered_string(), flag]


class _ColumnField(_Field):
    """`_id` or `org_id`: a string column that every document has."""

    def __init__(self, column: Any, dialect: str) -> None:
        super().__init__(dialect)
        self._column = column

    def kind_in(self, kinds: set[str]) -> ColumnElement[bool]:
        return true() if "string" in kinds else false()

    def known(self, comparison: ColumnElement[bool]) -> ColumnElement[bool]:
        # The column is never NULL; a bare comparison lets the planner use its index.
        return comparison

    def number(self) -> ColumnElement[float]:
        return literal(None, Float)

    def string(self) -> ColumnElement[str]:
        # Uncollated, so equality keeps using the primary key's index.
        return self._column

    def sort_keys(self) -> list[ColumnElement[Any]]:
        return [self.ordered_string()]


class _BodyField(_Field):
    """A (dotted) path into the JSON body."""

    def __init__(self, parts: tuple[str, ...], dialect: str) -> None:
        super().__init__(dialect)
        self._parts = parts
        self._value = StoredDocument.body[parts]

    def kind_in(self, kinds: set[str]) -> ColumnElement[bool]:
        if self._dialect == "postgresql":
            typeof = func.coalesce(func.jsonb_typeof(self._value), "missing")
            booleans = kinds & {"true", "false"}
            condition: ColumnElement[bool] = typeof.in_(sorted(kinds - booleans))
            # jsonb_typeof says only 'boolean'; the value's text says which one.
            for value in sorted(booleans):
                condition = or_(
                    condition, and_(typeof == "boolean", self._value.as_string() == value)
                )
            return condition
        path = "$" + "".join(f'."{part}"' for part in self._parts)
        raw = func.coalesce(func.json_type(StoredDocument.body, path), "missing")
        return raw.in_(sorted(name for kind in kinds for name in _SQLITE_KINDS[kind]))

    def number(self) -> ColumnElement[float]:
        # The CASE guard matters: PostgreSQL would fail casting a string to a number.
        return case((self.kind_in({"number"}), self._value.as_float()), else_=None)

    def string(self) -> ColumnElement[str]:
        return case((self.kind_in({"string"}), self._value.as_string()), else_=None)


def _field(name: str, dialect: str) -> _Field:
    """The field a (dotted) name addresses."""
    parts = tuple(name.split("."))
    if not name or any(not part or '"' in part for part in parts) or name.startswith("$"):
        raise ValueError(f"unsupported field name {name!r}")
    if name == ID_FIELD:
        return _ColumnField(StoredDocument.id, dialect)
    if name == ORG_FIELD:
        return _ColumnField(StoredDocument.org_id, dialect)
    return _BodyField(parts, dialect)


@lru_cache(maxsize=4096)
def _scope(collection: str, org_id: str) -> ColumnElement[bool]:
    """One organisation's collection (built once per pair: every call of the store needs
    it, and building SQL expressions is a measurable part of a conversation turn)."""
    return and_(StoredDocument.collection == collection, StoredDocument.org_id == org_id)


# Statements of the hot paths (a turn reads its conversation, then updates it twice),
# built once: building SQL expressions per call was a measurable part of a turn.
def _by_id() -> ColumnElement[bool]:
    return and_(
        StoredDocument.collection == bindparam("c"),
        StoredDocument.org_id == bindparam("o"),
        StoredDocument.id == bindparam("i"),
    )


_GET_BY_ID = select(StoredDocument.id, StoredDocument.org_id, StoredDocument.body).where(_by_id())
_BODY_BY_ID = select(StoredDocument.id, StoredDocument.body).where(_by_id())
_SET_BODY = (
    sql_update(StoredDocument)
    .where(_by_id())
    .values(body=bindparam("b", type_=StoredDocument.__table__.c.body.type))
)
# Every insert: rows of all four columns (an executemany of plain dicts).
_INSERT = insert(StoredDocument)


# --- filters ----------------------------------------------------------------------------
def _scalar(value: Any) -> Scalar:
    if not isinstance(value, _SCALARS):
        raise ValueError(f"filter values must be JSON scalars, not {type(value).__name__}")
    return value


def _equals(field: _Field, value: Any) -> ColumnElement[bool]:
    value = _scalar(value)
    if value is None:
        return field.kind_in({"missing", "null"})
    if isinstance(value, bool):  # before int: bool is a subclass of int
        return field.kind_in({"true" if value else "false"})
    if isinstance(value, int | float):
        return field.known(field.number() == value)
    return field.known(field.string() == value)


def _compare(field: _Field, op: str, value: Any) -> ColumnElement[bool]:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{op} takes a number or a string, not {value!r}")
    side: ColumnElement[Any] = field.ordered_string() if isinstance(value, str) else field.number()
    comparisons = {
        "$gt": side.__gt__,
        "$gte": side.__ge__,
        "$lt": side.__lt__,
        "$lte": side.__le__,
    }
    return field.known(comparisons[op](value))


def _one_of(field: _Field, op: str, values: Any) -> ColumnElement[bool]:
    if not isinstance(values, list | tuple):
        raise ValueError(f"{op} takes a list")
    return or_(false(), *(_equals(field, value) for value in values))


def _operator(field: _Field, op: str, value: Any) -> ColumnElement[bool]:
    if op == "$ne":
        return not_(_equals(field, value))
    if op == "$in":
        return _one_of(field, op, value)
    if op == "$nin":
        return not_(_one_of(field, op, value))
    if op == "$exists":
        if not isinstance(value, bool):
            raise ValueError("$exists takes true or false")
        missing = field.kind_in({"missing"})
        return not_(missing) if value else missing
    if op in _RANGE_OPS:
        return _compare(field, op, value)
    raise ValueError(f"unsupported filter operator {op!r}")


def _condition(name: str, spec: Any, dialect: str) -> ColumnElement[bool]:
    field = _field(name, dialect)
    if isinstance(spec, Mapping):
        if not spec or not all(isinstance(op, str) and op.startswith("$") for op in spec):
            raise ValueError(f"filter on {name!r}: embedded-document equality is unsupported")
        return and_(*(_operator(field, op, value) for op, value in spec.items()))
    return _equals(field, spec)


def translate_filter(filter: Filter | None, dialect: str) -> ColumnElement[bool]:
    """The SQL condition for a filter in the port's subset (ValueError outside it)."""
    return and_(true(), *(_condition(name, spec, dialect) for name, spec in (filter or {}).items()))


def translate_sort(sort: Sort, dialect: str) -> list[UnaryExpression[Any]]:
    """ORDER BY clauses for `sort`; insertion order, then `_id`, break ties (stable pages)."""
    clauses: list[UnaryExpression[Any]] = []
    for name, direction in sort:
        if direction not in (1, -1):
            raise ValueError(f"sort direction for {name!r} must be 1 or -1")
        for key in _field(name, dialect).sort_keys():
            clauses.append(key.asc() if direction == 1 else key.desc())
    if ID_FIELD not in {name for name, _ in sort}:
        clauses += [StoredDocument.created_at.asc(), StoredDocument.id.asc()]
    return clauses


# --- updates (applied in Python, with MongoDB's rules) -----------------------------------
_UPDATE_OPS = ("$set", "$unset", "$inc", "$push")


def _check_update_paths(update: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """(operator, path, value) triples; rejects unknown operators and conflicting paths."""
    if not update or any(op not in _UPDATE_OPS for op in update):
        raise ValueError(f"update must use only {', '.join(_UPDATE_OPS)}: {list(update)}")
    steps: list[tuple[str, str, Any]] = []
    for op, fields in update.items():
        if not isinstance(fields, Mapping):
            raise ValueError(f"{op} takes a mapping of fields")
        steps += [(op, path, value) for path, value in fields.items()]
    paths = [path for _, path, _ in steps]
    for path in paths:
        parts = path.split(".")
        if not path or path.startswith("$") or any(not part for part in parts):
            raise ValueError(f"unsupported field name {path!r}")
        if parts[0] in (ID_FIELD, ORG_FIELD):
            raise ValueError(f"{parts[0]} cannot be updated")
    for i, a in enumerate(paths):
        for b in paths[i + 1 :]:
            if a == b or a.startswith(b + ".") or b.startswith(a + "."):
                raise ValueError(f"updating {a!r} and {b!r} together would conflict")
    return steps


def _parent(doc: dict[str, Any], path: str, *, create: bool) -> tuple[dict[str, Any] | None, str]:
    """The object holding the last segment of `path`, creating objects on the way."""
    *parents, leaf = path.split(".")
    node: Any = doc
    for part in parents:
        child = node.get(part)
        if child is None and part not in node:
            if not create:
                return None, leaf
            child = node[part] = {}
        if not isinstance(child, dict):
            if not create:
                return None, leaf
            raise ValueError(f"cannot create field {path!r}: {part!r} is not an object")
        node = child
    return node, leaf


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _apply_step(doc: dict[str, Any], op: str, path: str, value: Any) -> None:
    parent, leaf = _parent(doc, path, create=op != "$unset")
    if parent is None:  # $unset of a path that is not there
        return
    if op == "$set":
        parent[leaf] = copy.deepcopy(value)
    elif op == "$unset":
        parent.pop(leaf, None)
    elif op == "$inc":
        current = parent.get(leaf, 0)
        if not _is_number(value) or not _is_number(current):
            raise ValueError(f"$inc needs numbers at {path!r}")
        parent[leaf] = current + value
    else:  # $push, with MongoDB's `$each` to append several values
        current = parent.setdefault(leaf, [])
        if not isinstance(current, list):
            raise ValueError(f"$push needs an array at {path!r}")
        each = isinstance(value, Mapping) and list(value) == ["$each"]
        if each and not isinstance(value["$each"], list | tuple):
            raise ValueError(f"$each at {path!r} takes a list")
        current.extend(copy.deepcopy(list(value["$each"])) if each else [copy.deepcopy(value)])


def apply_update(body: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """A new body with the update operators applied as MongoDB would."""
    steps = _check_update_paths(update)
    doc = copy.deepcopy(dict(body))
    for op, path, value in steps:
        _apply_step(doc, op, path, value)
    return doc


# --- the adapter ------------------------------------------------------------------------
def _to_document(doc_id: str, org_id: str, body: Mapping[str, Any]) -> Document:
    return {ID_FIELD: doc_id, **body, ORG_FIELD: org_id}


def _row(collection: str, org_id: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    doc_id = doc.get(ID_FIELD)
    if not isinstance(doc_id, str):
        raise ValueError("a document needs a string _id")
    body = {k: v for k, v in doc.items() if k not in (ID_FIELD, ORG_FIELD)}
    return {"collection": collection, "org_id": org_id, "id": doc_id, "body": body}


class SqlDocumentStore:
    """The document-store port over the `documents` table of a relational database.

    Each operation is one function of a synchronous connection, run in one hop: on SQLite
    in the store's own thread over a synchronous engine on the same file (one thread
    switch per operation, where the async driver switches threads for every cursor call),
    on one connection that thread keeps (no transaction is left open between operations:
    a write commits, a read rolls back); on PostgreSQL through the async engine
    (`run_sync`).
    """

    name = "sql"

    def __init__(self, database: Database) -> None:
        self._db = database
        self._dialect = database.engine.dialect.name
        self._write_locks: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            WeakKeyDictionary()
        )
        self._sync: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._writer: WriterLock | None = None
        self._conn: Connection | None = None  # used in `_thread` only
        if self._dialect == "sqlite" and sqlite_file(database.url):
            self._sync = sync_sqlite_engine(database.url)
            # One thread: SQLite admits one writer, and queueing here costs no busy waits.
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vocalis-docs")
            # ... and the other processes' writers queue on a lock the kernel hands over
            # at once, not in SQLite's sleeping busy handler (core/sqlite_writer.py).
            self._writer = WriterLock(str(make_url(database.url).database))

    def _scope(self, collection: str, org_id: str) -> ColumnElement[bool]:
        return _scope(collection, org_id)

    def _where(self, collection: str, org_id: str, filter: Filter | None) -> ColumnElement[bool]:
        return and_(self._scope(collection, org_id), translate_filter(filter, self._dialect))

    def _process_write_lock(self) -> AbstractAsyncContextManager[object]:
        """On SQLite, one writer at a time in this process (per event loop).

        SQLite admits one writer anyway; queueing here instead of in its busy handler
        avoids that handler's sleeps (up to 100 ms each) under concurrent writes.
        """
        if self._dialect != "sqlite":
            return nullcontext()
        loop = asyncio.get_running_loop()
        lock = self._write_locks.get(loop)
        if lock is None:
            lock = self._write_locks[loop] = asyncio.Lock()
        return lock

    async def _run(
        self, work: Callable[[Connection], T], *, write: bool = False, reads_first: bool = True
    ) -> T:
        """Run `work` on a connection in one hop; a write commits (on SQLite holding the
        write lock from its first statement when it `reads_first`: a deferred transaction
        would read, then upgrade too late, and two updaters could both read the old body)."""
        immediate = write and reads_first and self._dialect == "sqlite"
        if self._sync is not None:
            writer = self._writer if write else None

            def job() -> T:
                with writer or nullcontext():
                    conn = self._thread_connection()
                    try:
                        if immediate:
                            conn.exec_driver_sql("BEGIN IMMEDIATE")
                        result = work(conn)
                        if write:
                            conn.commit()
                        else:
                            conn.rollback()  # a read's snapshot ends with it
                        return result
                    except BaseException:
                        self._drop_thread_connection()  # rolled back, and never reused
                        raise

            return await asyncio.get_running_loop().run_in_executor(self._thread, job)
        lock = self._process_write_lock() if write else nullcontext()
        async with lock, self._db.engine.connect() as aconn:
            if immediate:
                await aconn.exec_driver_sql("BEGIN IMMEDIATE")
            result = await aconn.run_sync(work)
            if write:
                await aconn.commit()
            return result

    def _thread_connection(self) -> Connection:
        """The store thread's connection (SQLite): opened once and kept, outside any
        transaction between operations, instead of a pool checkout and return per one."""
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            assert self._sync is not None
            conn = self._conn = self._sync.connect()
        return conn

    def _drop_thread_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # rolls back what is open

    async def insert(self, collection: str, org_id: str, doc: Document) -> Document:
        """Insert one document (must carry `_id`); returns it with `org_id` set."""
        row = _row(collection, org_id, doc)
        try:
            await self._run(
                lambda conn: conn.execute(_INSERT, [row]),
                write=True,
                reads_first=False,
            )
        except IntegrityError as exc:
            raise DuplicateKey(f"{collection}: _id {row['id']!r} already exists") from exc
        return {**doc, ORG_FIELD: org_id}

    async def insert_many(self, collection: str, org_id: str, docs: Sequence[Document]) -> int:
        """Insert several documents; returns how many were inserted."""
        rows = [_row(collection, org_id, doc) for doc in docs]
        if not rows:
            return 0
        try:
            await self._run(
                lambda conn: conn.execute(_INSERT, rows),
                write=True,
                reads_first=False,
            )
        except IntegrityError:
            # Keep MongoDB's ordered semantics: what precedes the collision is stored.
            for doc in docs:
                await self.insert(collection, org_id, doc)
        return len(rows)

    def shares_database(self, database: object) -> bool:
        """Whether this store's table is in `database` (`SharedTransactionStore`)."""
        return database is self._db

    async def insert_with(self, inserts: Inserts, also: Callable[[Connection], Any]) -> None:
        """Insert the documents of `inserts` and run `also(connection)` in one transaction
        (one hop); `DuplicateKey`, with nothing stored, when an `_id` exists."""
        rows = [_row(c, org_id, doc) for c, org_id, docs in inserts for doc in docs]

        def work(conn: Connection) -> None:
            also(conn)
            if rows:
                conn.execute(_INSERT, rows)

        try:
            await self._run(work, write=True, reads_first=False)
        except IntegrityError as exc:
            raise DuplicateKey(f"an _id of {[r['id'] for r in rows]} already exists") from exc

    async def get(self, collection: str, org_id: str, doc_id: str) -> Document | None:
        """One document by `_id`, or None."""
        params = {"c": collection, "o": org_id, "i": doc_id}
        row = await self._run(lambda conn: conn.execute(_GET_BY_ID, params).first())
        return None if row is None else _to_document(row.id, row.org_id, row.body)

    async def find_one(self, collection: str, org_id: str, filter: Filter) -> Document | None:
        """The first document matching `filter`, or None."""
        found = await self.find(collection, org_id, filter, limit=1)
        return found[0] if found else None

    async def find(
        self,
        collection: str,
        org_id: str,
        filter: Filter | None = None,
        *,
        sort: Sort = (),
        limit: int | None = None,
        skip: int = 0,
    ) -> list[Document]:
        """Documents matching `filter` in `sort` order."""
        if limit == 0:
            return []
        query = (
            select(StoredDocument.id, StoredDocument.org_id, StoredDocument.body)
            .where(self._where(collection, org_id, filter))
            .order_by(*translate_sort(sort, self._dialect))
            .limit(limit)
            .offset(skip or None)
        )
        rows = await self._run(lambda conn: conn.execute(query).all())
        return [_to_document(row.id, row.org_id, row.body) for row in rows]

    async def count(self, collection: str, org_id: str, filter: Filter | None = None) -> int:
        """How many documents match."""
        query = select(func.count()).where(self._where(collection, org_id, filter))
        return int(await self._run(lambda conn: conn.execute(query).scalar_one()))

    def _update_work(
        self, collection: str, org_id: str, filter: Filter, update: Mapping[str, Any]
    ) -> Callable[[Connection], bool]:
        _check_update_paths(update)  # reject a bad update even when nothing matches
        scoped = {"c": collection, "o": org_id}
        query: Any
        doc_id = filter.get(ID_FIELD) if len(filter) == 1 else None
        if isinstance(doc_id, str):  # by `_id` (most updates): one prepared statement
            query, params = _BODY_BY_ID, {**scoped, "i": doc_id}
        else:
            query = (
                select(StoredDocument.id, StoredDocument.body)
                .where(self._where(collection, org_id, filter))
                .order_by(*translate_sort((), self._dialect))
                .limit(1)
            )
            params = {}
        if self._dialect == "postgresql":
            query = query.with_for_update()

        def work(conn: Connection) -> bool:
            row = conn.execute(query, params).first()
            if row is None:
                return False
            body = apply_update(row.body, update)
            conn.execute(_SET_BODY, {**scoped, "i": row.id, "b": body})
            return True

        return work

    async def update_one(
        self, collection: str, org_id: str, filter: Filter, update: Mapping[str, Any]
    ) -> bool:
        """Apply `update` to the first match; returns whether one matched."""
        return await self._run(self._update_work(collection, org_id, filter, update), write=True)

    async def insert_then_update(
        self,
        insert_into: str,
        org_id: str,
        doc: Document,
        collection: str,
        filter: Filter,
        update: Mapping[str, Any],
    ) -> bool:
        """`insert` then `update_one`, in one transaction (one hop): both or neither
        (`DuplicateKey` when the document's `_id` exists); whether the update matched."""
        row = _row(insert_into, org_id, doc)
        updating = self._update_work(collection, org_id, filter, update)

        def work(conn: Connection) -> bool:
            conn.execute(_INSERT, [row])
            return updating(conn)

        try:
            return await self._run(work, write=True)
        except IntegrityError as exc:
            raise DuplicateKey(f"{insert_into}: _id {row['id']!r} already exists") from exc

    async def delete_many(self, collection: str, org_id: str, filter: Filter | None = None) -> int:
        """Delete every match; returns how many were deleted."""
        statement = delete(StoredDocument).where(self._where(collection, org_id, filter))
        result = await self._run(
            lambda conn: conn.execute(statement).rowcount, write=True, reads_first=False
        )
        return int(result)

    async def ensure_indexes(
        self, collection: str, fields: Sequence[Sequence[tuple[str, int]]]
    ) -> None:
        """A no-op: the table's own indexes are the ones this store needs.

        Lookups are confined to one organisation's collection by the primary key, which is
        what the embedded, single-box store needs; indexes on JSON paths would have to match
        the type-guarded expressions above exactly, and DDL belongs in the migrations.
        """

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        await self._db.ping()

    async def close(self) -> None:
        """Release the SQLite thread and engine (the Database is closed by its owner)."""
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(
                self._thread, self._drop_thread_connection
            )
            self._thread.shutdown(wait=True)
            self._thread = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._sync is not None:
            self._sync.dispose()
            self._sync = None

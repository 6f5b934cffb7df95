"""Document store on MongoDB through PyMongo's async client: the production adapter.

Every call adds the caller's `org_id` to the filter and to stored documents. Filters and
updates are checked against the port's portable subset before they reach the server, so
code that works here also works on the embedded SQL store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, WriteError

from vocalis.ports.document_store import Document, DuplicateKey, Filter, Sort

ORG_FIELD = "org_id"
DEFAULT_DATABASE = "vocalis"
_DUPLICATE_KEY_CODES = {11000, 11001}
_RANGE_OPS = {"$gt", "$gte", "$lt", "$lte"}
_UPDATE_OPS = {"$set", "$unset", "$inc", "$push"}
_SCALARS = (str, int, float, bool, type(None))


def _check_operand(name: str, op: str | None, value: Any) -> None:
    """Reject an operator or operand outside the port's subset (op None: plain equality)."""
    if op in (None, "$ne"):
        ok = isinstance(value, _SCALARS)
    elif op in ("$in", "$nin"):
        ok = isinstance(value, list | tuple) and all(isinstance(v, _SCALARS) for v in value)
    elif op == "$exists":
        ok = isinstance(value, bool)
    elif op in _RANGE_OPS:
        ok = isinstance(value, int | float | str) and not isinstance(value, bool)
    else:
        raise ValueError(f"unsupported filter operator {op!r}")
    if not ok:
        raise ValueError(f"filter on {name!r}: unsupported operand for {op}: {value!r}")


def _check_filter(filter: Filter) -> None:
    """Reject anything outside the port's subset (the SQL store could not run it)."""
    for name, spec in filter.items():
        if not isinstance(name, str) or not name or name.startswith("$"):
            raise ValueError(f"unsupported field name {name!r}")
        if isinstance(spec, Mapping) and not spec:
            raise ValueError(f"filter on {name!r}: embedded-document equality is unsupported")
        operands = spec.items() if isinstance(spec, Mapping) else [(None, spec)]
        for op, value in operands:
            _check_operand(name, op, value)


def _check_update(update: Mapping[str, Any]) -> None:
    """Reject unknown operators and any write to `_id` or `org_id`."""
    if not update or any(op not in _UPDATE_OPS for op in update):
        raise ValueError(f"update must use only $set, $unset, $inc, $push: {list(update)}")
    for op, fields in update.items():
        if not isinstance(fields, Mapping):
            raise ValueError(f"{op} takes a mapping of fields")
        for path in fields:
            if path.split(".")[0] in ("_id", ORG_FIELD):
                raise ValueError(f"{path} cannot be updated")


def _scoped(org_id: str, filter: Filter | None) -> dict[str, Any]:
    """The filter narrowed to one organisation; a caller's own org_id test still applies."""
    filter = filter or {}
    _check_filter(filter)
    if ORG_FIELD in filter:
        return {"$and": [dict(filter), {ORG_FIELD: org_id}]}
    return {**filter, ORG_FIELD: org_id}


class MongoDocumentStore:
    """The document-store port over a MongoDB database."""

    name = "mongo"

    def __init__(self, url: str, database: str | None = None) -> None:
        self._client: AsyncMongoClient[Document] = AsyncMongoClient(url)
        self._db = (
            self._client.get_database(database)
            if database
            else self._client.get_default_database(default=DEFAULT_DATABASE)
        )

    def _collection(self, name: str) -> AsyncCollection[Document]:
        return self._db[name]

    async def insert(self, collection: str, org_id: str, doc: Document) -> Document:
        """Insert one document (must carry `_id`); returns it with `org_id` set."""
        stored = _stored(org_id, doc)
        try:
            await self._collection(collection).insert_one(stored)
        except DuplicateKeyError as exc:
            raise DuplicateKey(f"{collection}: _id {doc['_id']!r} already exists") from exc
        return {**doc, ORG_FIELD: org_id}

    async def insert_many(self, collection: str, org_id: str, docs: Sequence[Document]) -> int:
        """Insert several documents; returns how many were inserted."""
        stored = [_stored(org_id, doc) for doc in docs]
        if not stored:
            return 0
        try:
            result = await self._collection(collection).insert_many(stored, ordered=True)
        except BulkWriteError as exc:
            codes = {error.get("code") for error in exc.details.get("writeErrors", [])}
            if codes & _DUPLICATE_KEY_CODES:
                raise DuplicateKey(f"{collection}: duplicate _id in insert_many") from exc
            raise
        return len(result.inserted_ids)

    async def get(self, collection: str, org_id: str, doc_id: str) -> Document | None:
        """One document by `_id`, or None."""
        return await self.find_one(collection, org_id, {"_id": doc_id})

    async def find_one(self, collection: str, org_id: str, filter: Filter) -> Document | None:
        """The first document matching `filter`, or None."""
        return await self._collection(collection).find_one(_scoped(org_id, filter))

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
        if limit == 0:  # MongoDB reads limit 0 as "no limit"
            return []
        for name, direction in sort:
            if direction not in (1, -1):
                raise ValueError(f"sort direction for {name!r} must be 1 or -1")
        cursor = self._collection(collection).find(
            _scoped(org_id, filter), sort=list(sort) or None, skip=skip, limit=limit or 0
        )
        return await cursor.to_list()

    async def count(self, collection: str, org_id: str, filter: Filter | None = None) -> int:
        """How many documents match."""
        return await self._collection(collection).count_documents(_scoped(org_id, filter))

    async def update_one(
        self, collection: str, org_id: str, filter: Filter, update: Mapping[str, Any]
    ) -> bool:
        """Apply `update` to the first match; returns whether one matched."""
        _check_update(update)
        try:
            result = await self._collection(collection).update_one(
                _scoped(org_id, filter), dict(update)
            )
        except WriteError as exc:  # conflicting paths, $inc on a string, ...
            raise ValueError(str(exc)) from exc
        return result.matched_count > 0

    async def delete_many(self, collection: str, org_id: str, filter: Filter | None = None) -> int:
        """Delete every match; returns how many were deleted."""
        result = await self._collection(collection).delete_many(_scoped(org_id, filter))
        return result.deleted_count

    async def ensure_indexes(
        self, collection: str, fields: Sequence[Sequence[tuple[str, int]]]
    ) -> None:
        """Create the compound indexes (each prefixed by org_id) if missing."""
        for keys in fields:
            rest = [(name, direction) for name, direction in keys if name != ORG_FIELD]
            await self._collection(collection).create_index([(ORG_FIELD, 1), *rest])

    async def ping(self) -> None:
        """Raise if the backend is unreachable."""
        await self._client.admin.command("ping")

    async def close(self) -> None:
        """Release connections."""
        await self._client.close()


def _stored(org_id: str, doc: Document) -> Document:
    """The document as stored: a string `_id` and the caller's `org_id`."""
    if not isinstance(doc.get("_id"), str):
        raise ValueError("a document needs a string _id")
    return {**doc, ORG_FIELD: org_id}

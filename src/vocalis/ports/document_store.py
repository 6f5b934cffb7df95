"""Document store port: conversations, messages, events, analyses.

Every operation takes the `org_id` of the caller; adapters add it to each filter and to
each stored document, so no call can reach another organisation's documents.

Filters are a small, portable subset of MongoDB's query language that every adapter
implements: equality on a (dotted) field, and the operators `$in`, `$nin`, `$ne`, `$gt`,
`$gte`, `$lt`, `$lte`, `$exists`. Updates support `$set`, `$unset`, `$inc` and `$push`.
Documents are JSON-compatible dicts with a string `_id`; datetimes are stored as
ISO-8601 strings by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

Document = dict[str, Any]
Filter = Mapping[str, Any]
Sort = Sequence[tuple[str, int]]  # (field, 1 ascending | -1 descending)


class DuplicateKey(ValueError):
    """An insert collided with an existing `_id` or unique index."""


@runtime_checkable
class DocumentStore(Protocol):
    """Org-scoped JSON documents in named collections."""

    name: str

    async def insert(self, collection: str, org_id: str, doc: Document) -> Document:
        """Insert one document (must carry `_id`); returns it with `org_id` set."""
        ...

    async def insert_many(self, collection: str, org_id: str, docs: Sequence[Document]) -> int:
        """Insert several documents; returns how many were inserted."""
        ...

    async def get(self, collection: str, org_id: str, doc_id: str) -> Document | None:
        """One document by `_id`, or None."""
        ...

    async def find_one(self, collection: str, org_id: str, filter: Filter) -> Document | None:
        """The first document matching `filter`, or None."""
        ...

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
        ...

    async def count(self, collection: str, org_id: str, filter: Filter | None = None) -> int:
        """How many documents match."""
        ...

    async def update_one(
        self, collection: str, org_id: str, filter: Filter, update: Mapping[str, Any]
    ) -> bool:
        """Apply `update` to the first match; returns whether one matched."""
        ...

    async def delete_many(self, collection: str, org_id: str, filter: Filter | None = None) -> int:
        """Delete every match; returns how many were deleted."""
        ...

    async def ensure_indexes(
        self, collection: str, fields: Sequence[Sequence[tuple[str, int]]]
    ) -> None:
        """Create the compound indexes (each prefixed by org_id) if missing."""
        ...

    async def ping(self) -> None:
        """Raise if the backend is unreachable."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


# (collection, org_id, documents) for `SharedTransactionStore.insert_with`.
Inserts = Sequence[tuple[str, str, Sequence[Document]]]


@runtime_checkable
class SharedTransactionStore(Protocol):
    """A document store kept in a relational database (the JSON table): its inserts can
    share one transaction with other rows of that database (the outbox's events)."""

    def shares_database(self, database: object) -> bool:
        """Whether the store lives in `database` (the same `core.db.Database`)."""
        ...

    async def insert_with(self, inserts: Inserts, also: Any) -> None:
        """Insert every document of `inserts` and run `also(connection)` (a synchronous
        SQLAlchemy connection) in one transaction: all of it is stored, or none.
        Raises `DuplicateKey` (nothing stored) when an `_id` exists."""
        ...


@runtime_checkable
class InsertThenUpdate(Protocol):
    """A document store that can insert one document and update another in one
    transaction (the JSON table); others make the two calls one after the other."""

    async def insert_then_update(
        self,
        insert_into: str,
        org_id: str,
        doc: Document,
        collection: str,
        filter: Filter,
        update: Mapping[str, Any],
    ) -> bool:
        """Insert `doc` into `insert_into`, then apply `update` to the first match of
        `filter` in `collection`, as one transaction; whether the update matched."""
        ...


async def insert_then_update(
    store: DocumentStore,
    insert_into: str,
    org_id: str,
    doc: Document,
    collection: str,
    filter: Filter,
    update: Mapping[str, Any],
) -> bool:
    """Insert `doc`, then update the first match of `filter`: in one transaction where the
    store can (`InsertThenUpdate`), else as two calls (the insert first)."""
    if isinstance(store, InsertThenUpdate):
        return await store.insert_then_update(insert_into, org_id, doc, collection, filter, update)
    await store.insert(insert_into, org_id, doc)
    return await store.update_one(collection, org_id, filter, update)

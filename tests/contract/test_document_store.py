"""The document-store contract: every adapter behaves the same, against real servers.

Runs each test on MongoDB (a real MongoDB-wire server, SecantusDB), and on the SQL store
over SQLite and over PostgreSQL. Tenant isolation is part of the contract: nothing one
organisation does can read, count, change or delete another organisation's documents.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import ServerSelectionTimeoutError
from sqlalchemy import Table

from tests.fixtures.services import PG_ADMIN_DSN, drop_pg_database
from vocalis.adapters.mongo_document_store import MongoDocumentStore
from vocalis.adapters.sql_document_store import SqlDocumentStore, StoredDocument
from vocalis.core.db import Database
from vocalis.ports.document_store import (
    Document,
    DocumentStore,
    DuplicateKey,
    insert_then_update,
)

COLL = "items"
ORG_A = "org_a"
ORG_B = "org_b"
BACKENDS = ["mongo", "sql-sqlite", "sql-postgres"]
DOCUMENTS_TABLE: Table = StoredDocument.__table__  # type: ignore[assignment]


async def _postgres_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """One fresh PostgreSQL database for this module, with a linguistic (ICU en-US) collation.

    Production databases often have one; strings must still compare by code point there.
    """
    name = f"vocalis_test_docs_{uuid.uuid4().hex[:10]}"
    create = f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
    try:
        asyncio.run(_postgres_admin(create))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_DSN} is not usable: {exc}. Run `make test`.")
    url = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{url}/{name}"
    drop_pg_database(f"{url}/{name}")


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URL of one backend; resolved outside the event loop, as the PostgreSQL helpers need."""
    if request.param == "mongo":
        return str(request.getfixturevalue("mongo_url"))
    if request.param == "sql-postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('documents')}/documents.db"


@pytest.fixture(scope="module")
async def database(backend: str) -> AsyncIterator[Database | None]:
    """The relational database holding the documents table (None for MongoDB)."""
    if backend.startswith("mongodb://"):
        yield None
        return
    db = Database(backend)
    async with db.engine.begin() as conn:
        await conn.run_sync(DOCUMENTS_TABLE.create, checkfirst=True)
    yield db
    await db.dispose()


@pytest.fixture
def mongo_database() -> str:
    """A database name no other test uses (MongoDB only)."""
    return f"contract_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def store(
    backend: str, database: Database | None, mongo_database: str
) -> AsyncIterator[DocumentStore]:
    """A document store with no documents, emptied again after the test."""
    if database is None:
        mongo = MongoDocumentStore(backend, database=mongo_database)
        yield mongo
        await mongo.close()
        admin: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backend)
        await admin.drop_database(mongo_database)
        await admin.close()
        return
    yield SqlDocumentStore(database)
    async with database.engine.begin() as conn:
        await conn.execute(DOCUMENTS_TABLE.delete())


@pytest.fixture
async def twin(
    backend: str, store: DocumentStore, mongo_database: str
) -> AsyncIterator[DocumentStore]:
    """A second store over the same data with its own connections, like another process."""
    if isinstance(store, MongoDocumentStore):
        mongo = MongoDocumentStore(backend, database=mongo_database)
        yield mongo
        await mongo.close()
        return
    db = Database(backend)
    yield SqlDocumentStore(db)
    await db.dispose()


# A small dataset whose fields mix types on purpose: "n" is a number except in "d",
# where it is the string "7"; "flag" is missing from "c"; "z" is null in "a" only.
DATASET: list[Document] = [
    {"_id": "a", "n": 1, "s": "apple", "flag": True, "z": None, "meta": {"k": 5, "tag": "x"}},
    {"_id": "b", "n": 2.5, "s": "banana", "flag": False, "meta": {"k": 10}},
    {"_id": "c", "n": 10, "s": "10", "meta": {"k": 1, "tag": "y"}},
    {"_id": "d", "n": "7", "s": "Zebra", "flag": True},
]


@pytest.fixture
async def seeded(store: DocumentStore) -> DocumentStore:
    """The store with DATASET in org A and one unrelated document in org B."""
    await store.insert_many(COLL, ORG_A, DATASET)
    await store.insert(COLL, ORG_B, {"_id": "b-only", "n": 1, "s": "apple", "flag": True})
    return store


def ids(docs: list[Document]) -> list[str]:
    """The `_id`s of `docs`, in order."""
    return [doc["_id"] for doc in docs]


# --- insert and get ---------------------------------------------------------------------
async def test_store_implements_the_port(store: DocumentStore) -> None:
    assert isinstance(store, DocumentStore)


async def test_inserted_document_reads_back_with_org_id(store: DocumentStore) -> None:
    doc = {"_id": "m1", "role": "user", "content": "hi", "meta": {"tokens": 3, "ok": True}}
    returned = await store.insert(COLL, ORG_A, doc)
    assert returned == {**doc, "org_id": ORG_A}
    assert await store.get(COLL, ORG_A, "m1") == {**doc, "org_id": ORG_A}


async def test_insert_stamps_the_callers_org_over_one_in_the_document(
    store: DocumentStore,
) -> None:
    await store.insert(COLL, ORG_A, {"_id": "m1", "org_id": ORG_B})
    assert await store.get(COLL, ORG_B, "m1") is None
    assert await store.get(COLL, ORG_A, "m1") == {"_id": "m1", "org_id": ORG_A}


async def test_get_of_unknown_id_returns_none(store: DocumentStore) -> None:
    assert await store.get(COLL, ORG_A, "nope") is None


async def test_duplicate_id_raises_duplicate_key(store: DocumentStore) -> None:
    await store.insert(COLL, ORG_A, {"_id": "m1", "v": 1})
    with pytest.raises(DuplicateKey):
        await store.insert(COLL, ORG_A, {"_id": "m1", "v": 2})
    assert (await store.get(COLL, ORG_A, "m1") or {})["v"] == 1


async def test_id_is_unique_across_organisations_and_the_first_stays_intact(
    store: DocumentStore,
) -> None:
    await store.insert(COLL, ORG_A, {"_id": "m1", "v": 1})
    with pytest.raises(DuplicateKey):
        await store.insert(COLL, ORG_B, {"_id": "m1", "v": 2})
    assert await store.get(COLL, ORG_A, "m1") == {"_id": "m1", "v": 1, "org_id": ORG_A}
    assert await store.get(COLL, ORG_B, "m1") is None


async def test_same_id_in_another_collection_is_allowed(store: DocumentStore) -> None:
    await store.insert(COLL, ORG_A, {"_id": "m1"})
    await store.insert("other", ORG_A, {"_id": "m1"})
    assert await store.get("other", ORG_A, "m1") == {"_id": "m1", "org_id": ORG_A}


async def test_document_without_string_id_is_rejected(store: DocumentStore) -> None:
    with pytest.raises(ValueError):
        await store.insert(COLL, ORG_A, {"v": 1})
    with pytest.raises(ValueError):
        await store.insert(COLL, ORG_A, {"_id": 5})


async def test_insert_many_inserts_every_document(store: DocumentStore) -> None:
    assert await store.insert_many(COLL, ORG_A, [{"_id": f"m{i}"} for i in range(5)]) == 5
    assert await store.count(COLL, ORG_A) == 5


async def test_insert_many_of_nothing_inserts_nothing(store: DocumentStore) -> None:
    assert await store.insert_many(COLL, ORG_A, []) == 0


async def test_insert_many_stops_at_the_first_duplicate(store: DocumentStore) -> None:
    await store.insert(COLL, ORG_A, {"_id": "m2"})
    with pytest.raises(DuplicateKey):
        await store.insert_many(COLL, ORG_A, [{"_id": "m1"}, {"_id": "m2"}, {"_id": "m3"}])
    assert sorted(ids(await store.find(COLL, ORG_A))) == ["m1", "m2"]


async def test_unicode_content_round_trips_and_matches(store: DocumentStore) -> None:
    text = 'héllo ☃ 日本語 🎉 \u200b «quoted» "json" \\ end'
    await store.insert(COLL, ORG_A, {"_id": "ü-1", "text": text, "ключ": "значение"})
    assert await store.get(COLL, ORG_A, "ü-1") == {
        "_id": "ü-1",
        "text": text,
        "ключ": "значение",
        "org_id": ORG_A,
    }
    assert ids(await store.find(COLL, ORG_A, {"text": text})) == ["ü-1"]


# --- tenant isolation -------------------------------------------------------------------
async def test_other_org_cannot_get_a_document(seeded: DocumentStore) -> None:
    assert await seeded.get(COLL, ORG_B, "a") is None


async def test_other_org_finds_only_its_own_documents(seeded: DocumentStore) -> None:
    assert ids(await seeded.find(COLL, ORG_B)) == ["b-only"]
    assert ids(await seeded.find(COLL, ORG_B, {"s": "apple"})) == ["b-only"]
    assert await seeded.find_one(COLL, ORG_B, {"_id": "a"}) is None


async def test_filter_naming_another_org_finds_nothing(seeded: DocumentStore) -> None:
    assert await seeded.find(COLL, ORG_B, {"org_id": ORG_A}) == []
    assert await seeded.count(COLL, ORG_B, {"org_id": {"$ne": ORG_B}}) == 0


async def test_other_org_counts_only_its_own_documents(seeded: DocumentStore) -> None:
    assert await seeded.count(COLL, ORG_B) == 1
    assert await seeded.count(COLL, ORG_A) == len(DATASET)


async def test_other_org_cannot_update_a_document(seeded: DocumentStore) -> None:
    assert await seeded.update_one(COLL, ORG_B, {"_id": "a"}, {"$set": {"s": "hacked"}}) is False
    assert (await seeded.get(COLL, ORG_A, "a") or {})["s"] == "apple"


async def test_other_org_cannot_delete_documents(seeded: DocumentStore) -> None:
    assert await seeded.delete_many(COLL, ORG_B, {"_id": "a"}) == 0
    assert await seeded.delete_many(COLL, ORG_B) == 1
    assert await seeded.count(COLL, ORG_A) == len(DATASET)


async def test_update_cannot_move_a_document_to_another_org(seeded: DocumentStore) -> None:
    with pytest.raises(ValueError):
        await seeded.update_one(COLL, ORG_A, {"_id": "a"}, {"$set": {"org_id": ORG_B}})
    with pytest.raises(ValueError):
        await seeded.update_one(COLL, ORG_A, {"_id": "a"}, {"$set": {"_id": "z"}})
    assert await seeded.get(COLL, ORG_B, "a") is None


# --- filters ----------------------------------------------------------------------------
FILTER_CASES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "empty filter matches all": ({}, ["a", "b", "c", "d"]),
    "number equality": ({"n": 1}, ["a"]),
    "float equality": ({"n": 2.5}, ["b"]),
    "int matches equal float": ({"n": 10.0}, ["c"]),
    "string never equals number": ({"n": "10"}, []),
    "string equality": ({"s": "10"}, ["c"]),
    "true": ({"flag": True}, ["a", "d"]),
    "false": ({"flag": False}, ["b"]),
    "bool is not a number": ({"n": True}, []),
    "number is not a bool": ({"flag": 1}, []),
    "None matches null and missing": ({"flag": None}, ["c"]),
    "None matches null": ({"z": None}, ["a", "b", "c", "d"]),
    "dotted number": ({"meta.k": 5}, ["a"]),
    "dotted string": ({"meta.tag": "y"}, ["c"]),
    "dotted path into a non-object": ({"s.x": None}, ["a", "b", "c", "d"]),
    "$ne matches missing": ({"flag": {"$ne": True}}, ["b", "c"]),
    "$ne None means present": ({"z": {"$ne": None}}, []),
    "$ne dotted": ({"meta.tag": {"$ne": "x"}}, ["b", "c", "d"]),
    "$in strings": ({"s": {"$in": ["apple", "10"]}}, ["a", "c"]),
    "$in numbers": ({"n": {"$in": [1, 10]}}, ["a", "c"]),
    "$in with None": ({"flag": {"$in": [None, False]}}, ["b", "c"]),
    "$in empty": ({"s": {"$in": []}}, []),
    "$nin": ({"s": {"$nin": ["apple"]}}, ["b", "c", "d"]),
    "$nin matches missing": ({"flag": {"$nin": [True]}}, ["b", "c"]),
    "$gt compares numbers as numbers": ({"n": {"$gt": 1}}, ["b", "c"]),
    "$gte": ({"n": {"$gte": 2.5}}, ["b", "c"]),
    "$lt dotted": ({"meta.k": {"$lt": 10}}, ["a", "c"]),
    "$lte": ({"n": {"$lte": 2.5}}, ["a", "b"]),
    "range": ({"n": {"$gt": 1, "$lt": 10}}, ["b"]),
    "string range is by code point": ({"s": {"$gt": "Zebra"}}, ["a", "b"]),
    "string range skips numbers": ({"n": {"$lt": "z"}}, ["d"]),
    "$exists true": ({"flag": {"$exists": True}}, ["a", "b", "d"]),
    "$exists false": ({"flag": {"$exists": False}}, ["c"]),
    "null exists": ({"z": {"$exists": True}}, ["a"]),
    "$exists false dotted": ({"meta.tag": {"$exists": False}}, ["b", "d"]),
    "_id $in": ({"_id": {"$in": ["a", "c", "zz"]}}, ["a", "c"]),
    "_id range": ({"_id": {"$gt": "b"}}, ["c", "d"]),
    "fields are ANDed": ({"flag": True, "n": {"$lt": 5}}, ["a"]),
}


@pytest.mark.parametrize("case", FILTER_CASES, ids=list(FILTER_CASES))
async def test_filter_selects(seeded: DocumentStore, case: str) -> None:
    filter, expected = FILTER_CASES[case]
    assert sorted(ids(await seeded.find(COLL, ORG_A, filter))) == expected
    assert await seeded.count(COLL, ORG_A, filter) == len(expected)


UNSUPPORTED_FILTERS: dict[str, dict[str, Any]] = {
    "top-level operator": {"$or": [{"n": 1}]},
    "unknown operator": {"s": {"$regex": "^a"}},
    "explicit $eq": {"s": {"$eq": "apple"}},
    "embedded document equality": {"meta": {"k": 5}},
    "array equality": {"s": ["apple"]},
    "range on a bool": {"n": {"$gt": True}},
    "$in without a list": {"n": {"$in": 1}},
    "$exists with a non-bool": {"flag": {"$exists": 1}},
}


@pytest.mark.parametrize("case", UNSUPPORTED_FILTERS, ids=list(UNSUPPORTED_FILTERS))
async def test_filter_outside_the_portable_subset_is_rejected(
    seeded: DocumentStore, case: str
) -> None:
    with pytest.raises(ValueError):
        await seeded.find(COLL, ORG_A, UNSUPPORTED_FILTERS[case])


async def test_find_one_returns_a_match_or_none(seeded: DocumentStore) -> None:
    assert (await seeded.find_one(COLL, ORG_A, {"s": "banana"}) or {})["_id"] == "b"
    assert await seeded.find_one(COLL, ORG_A, {"s": "cherry"}) is None


# --- sort, limit, skip ------------------------------------------------------------------
async def test_sort_ascending_by_number(store: DocumentStore) -> None:
    await store.insert_many(
        COLL, ORG_A, [{"_id": k, "n": n} for k, n in [("x", 10), ("y", 9), ("z", 100)]]
    )
    assert ids(await store.find(COLL, ORG_A, sort=[("n", 1)])) == ["y", "x", "z"]


async def test_sort_descending_by_string(seeded: DocumentStore) -> None:
    found = await seeded.find(COLL, ORG_A, sort=[("s", -1)])
    assert ids(found) == ["b", "a", "d", "c"]  # banana, apple, Zebra, "10": by code point


async def test_sort_by_several_keys(seeded: DocumentStore) -> None:
    found = await seeded.find(COLL, ORG_A, sort=[("flag", -1), ("s", 1)])
    assert ids(found) == ["d", "a", "b", "c"]  # true (Zebra < apple), false, missing


async def test_sort_by_dotted_field(seeded: DocumentStore) -> None:
    found = await seeded.find(COLL, ORG_A, sort=[("meta.k", -1)])
    assert ids(found) == ["b", "a", "c", "d"]  # 10, 5, 1, missing last


async def test_sort_by_id_descending(seeded: DocumentStore) -> None:
    assert ids(await seeded.find(COLL, ORG_A, sort=[("_id", -1)])) == ["d", "c", "b", "a"]


async def test_sort_orders_types_like_mongodb(store: DocumentStore) -> None:
    values: list[tuple[str, Any]] = [("t", True), ("s", "a"), ("n", 3), ("z", None)]
    await store.insert_many(COLL, ORG_A, [{"_id": k, "v": v} for k, v in values])
    await store.insert(COLL, ORG_A, {"_id": "m"})
    found = await store.find(COLL, ORG_A, sort=[("v", 1), ("_id", 1)])
    assert ids(found) == ["m", "z", "n", "s", "t"]  # missing = null < number < string < bool


async def test_limit_and_skip_page_through_sorted_results(seeded: DocumentStore) -> None:
    by_id = [("_id", 1)]
    assert ids(await seeded.find(COLL, ORG_A, sort=by_id, limit=2)) == ["a", "b"]
    assert ids(await seeded.find(COLL, ORG_A, sort=by_id, skip=1, limit=2)) == ["b", "c"]
    assert ids(await seeded.find(COLL, ORG_A, sort=by_id, skip=3)) == ["d"]
    assert await seeded.find(COLL, ORG_A, sort=by_id, skip=10) == []


async def test_limit_zero_returns_nothing(seeded: DocumentStore) -> None:
    assert await seeded.find(COLL, ORG_A, limit=0) == []


async def test_bad_sort_direction_is_rejected(seeded: DocumentStore) -> None:
    with pytest.raises(ValueError):
        await seeded.find(COLL, ORG_A, sort=[("n", 0)])


# --- updates ----------------------------------------------------------------------------
async def update_and_get(store: DocumentStore, update: dict[str, Any]) -> Document:
    """Apply `update` to document "a" of the dataset and read it back."""
    assert await store.update_one(COLL, ORG_A, {"_id": "a"}, update) is True
    doc = await store.get(COLL, ORG_A, "a")
    assert doc is not None
    return doc


async def test_set_replaces_and_adds_fields(seeded: DocumentStore) -> None:
    doc = await update_and_get(seeded, {"$set": {"s": "apricot", "new": [1, {"x": 2}]}})
    assert (doc["s"], doc["new"]) == ("apricot", [1, {"x": 2}])


async def test_set_dotted_creates_missing_objects(seeded: DocumentStore) -> None:
    doc = await update_and_get(seeded, {"$set": {"meta.k": 6, "deep.er.path": "x"}})
    assert doc["meta"] == {"k": 6, "tag": "x"}
    assert doc["deep"] == {"er": {"path": "x"}}


async def test_unset_removes_fields_and_ignores_missing_ones(seeded: DocumentStore) -> None:
    doc = await update_and_get(seeded, {"$unset": {"meta.tag": "", "z": "", "missing.x": ""}})
    assert doc["meta"] == {"k": 5}
    assert "z" not in doc


async def test_inc_adds_to_numbers_and_starts_missing_ones(seeded: DocumentStore) -> None:
    doc = await update_and_get(seeded, {"$inc": {"n": 2, "meta.k": -1.5, "stats.turns": 1}})
    assert (doc["n"], doc["meta"]["k"], doc["stats"]) == (3, 3.5, {"turns": 1})


async def test_push_appends_and_starts_missing_arrays(seeded: DocumentStore) -> None:
    await update_and_get(seeded, {"$push": {"meta.events": {"type": "start"}}})
    doc = await update_and_get(seeded, {"$push": {"meta.events": "second"}})
    assert doc["meta"]["events"] == [{"type": "start"}, "second"]


async def test_push_each_appends_several_values(seeded: DocumentStore) -> None:
    doc = await update_and_get(seeded, {"$push": {"log": {"$each": ["x", "y"]}}})
    assert doc["log"] == ["x", "y"]


async def test_one_update_combines_operators(seeded: DocumentStore) -> None:
    doc = await update_and_get(
        seeded,
        {"$set": {"s": "done"}, "$unset": {"z": ""}, "$inc": {"n": 1}, "$push": {"l": 1}},
    )
    assert (doc["s"], "z" in doc, doc["n"], doc["l"]) == ("done", False, 2, [1])


async def test_update_one_without_a_match_returns_false(seeded: DocumentStore) -> None:
    assert await seeded.update_one(COLL, ORG_A, {"_id": "zz"}, {"$set": {"v": 1}}) is False
    assert await seeded.count(COLL, ORG_A, {"v": {"$exists": True}}) == 0


async def test_update_one_changes_only_one_match(seeded: DocumentStore) -> None:
    assert await seeded.update_one(COLL, ORG_A, {"flag": True}, {"$set": {"hit": 1}}) is True
    assert await seeded.count(COLL, ORG_A, {"hit": 1}) == 1


INVALID_UPDATES: dict[str, dict[str, Any]] = {
    "replacement document": {"s": "x"},
    "unknown operator": {"$rename": {"s": "t"}},
    "conflicting paths": {"$set": {"meta": {}}, "$inc": {"meta.k": 1}},
    "$inc on a string": {"$inc": {"s": 1}},
    "$push on a non-array": {"$push": {"s": 1}},
}


@pytest.mark.parametrize("case", INVALID_UPDATES, ids=list(INVALID_UPDATES))
async def test_invalid_update_is_rejected_and_changes_nothing(
    seeded: DocumentStore, case: str
) -> None:
    before = await seeded.get(COLL, ORG_A, "a")
    with pytest.raises(ValueError):
        await seeded.update_one(COLL, ORG_A, {"_id": "a"}, INVALID_UPDATES[case])
    assert await seeded.get(COLL, ORG_A, "a") == before


async def test_concurrent_increments_are_not_lost(
    store: DocumentStore, twin: DocumentStore
) -> None:
    await store.insert(COLL, ORG_A, {"_id": "counter", "v": 0})
    await asyncio.gather(
        *(
            s.update_one(COLL, ORG_A, {"_id": "counter"}, {"$inc": {"v": 1}})
            for s in [store, twin] * 10
        )
    )
    assert (await store.get(COLL, ORG_A, "counter") or {})["v"] == 20


async def test_concurrent_pushes_are_not_lost(store: DocumentStore, twin: DocumentStore) -> None:
    await store.insert(COLL, ORG_A, {"_id": "log", "items": []})
    writers = [store, twin] * 10
    await asyncio.gather(
        *(
            s.update_one(COLL, ORG_A, {"_id": "log"}, {"$push": {"items": i}})
            for i, s in enumerate(writers)
        )
    )
    assert sorted((await store.get(COLL, ORG_A, "log") or {})["items"]) == list(range(20))


# --- delete, count ----------------------------------------------------------------------
async def test_delete_many_removes_matches_and_counts_them(seeded: DocumentStore) -> None:
    assert await seeded.delete_many(COLL, ORG_A, {"flag": True}) == 2
    assert sorted(ids(await seeded.find(COLL, ORG_A))) == ["b", "c"]


async def test_delete_many_without_filter_empties_only_the_callers_collection(
    seeded: DocumentStore,
) -> None:
    await seeded.insert("other", ORG_A, {"_id": "keep"})
    assert await seeded.delete_many(COLL, ORG_A) == len(DATASET)
    assert await seeded.count(COLL, ORG_A) == 0
    assert await seeded.count("other", ORG_A) == 1
    assert await seeded.count(COLL, ORG_B) == 1


async def test_count_of_an_unknown_collection_is_zero(store: DocumentStore) -> None:
    assert await store.count("never-written", ORG_A) == 0


# --- indexes and health -----------------------------------------------------------------
async def test_ensure_indexes_is_idempotent_and_queries_still_work(seeded: DocumentStore) -> None:
    for _ in range(2):
        await seeded.ensure_indexes(COLL, [[("s", 1)], [("meta.k", -1), ("_id", 1)]])
    assert ids(await seeded.find(COLL, ORG_A, {"s": "apple"})) == ["a"]


async def test_ping_succeeds_on_a_live_backend(store: DocumentStore) -> None:
    await store.ping()


# --- MongoDB adapter specifics ----------------------------------------------------------
async def test_mongo_indexes_lead_with_org_id(mongo_url: str) -> None:
    database = f"contract_{uuid.uuid4().hex[:12]}"
    store = MongoDocumentStore(mongo_url, database=database)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        await store.ensure_indexes(COLL, [[("created_at", -1)], [("org_id", 1), ("s", 1)]])
        info = await client[database][COLL].index_information()
        keys = sorted(index["key"] for name, index in info.items() if name != "_id_")
        assert keys == [[("org_id", 1), ("created_at", -1)], [("org_id", 1), ("s", 1)]]
    finally:
        await store.close()
        await client.drop_database(database)
        await client.close()


async def test_mongo_stores_org_id_in_the_document(mongo_url: str) -> None:
    database = f"contract_{uuid.uuid4().hex[:12]}"
    store = MongoDocumentStore(mongo_url, database=database)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        await store.insert(COLL, ORG_A, {"_id": "m1"})
        assert await client[database][COLL].find_one({"_id": "m1"}) == {
            "_id": "m1",
            "org_id": ORG_A,
        }
    finally:
        await store.close()
        await client.drop_database(database)
        await client.close()


async def test_mongo_ping_raises_when_the_server_is_unreachable() -> None:
    store = MongoDocumentStore("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300")
    try:
        with pytest.raises(ServerSelectionTimeoutError):
            await store.ping()
    finally:
        await store.close()


async def test_insert_then_update_stores_both_and_a_duplicate_neither_where_atomic(
    store: DocumentStore,
) -> None:
    """A turn's message and its conversation's counters (`insert_then_update`): one
    transaction on the JSON table; two calls, insert first, elsewhere."""
    await store.insert("conv", "org_a", {"_id": "c1", "count": 0})
    matched = await insert_then_update(
        store, "msgs", "org_a", {"_id": "m1", "n": 1}, "conv", {"_id": "c1"}, {"$inc": {"count": 1}}
    )
    assert matched
    assert await store.get("msgs", "org_a", "m1") == {"_id": "m1", "n": 1, "org_id": "org_a"}
    assert (await store.get("conv", "org_a", "c1") or {})["count"] == 1
    # Another organisation's conversation is not reached.
    assert not await insert_then_update(
        store, "msgs", "org_b", {"_id": "m2"}, "conv", {"_id": "c1"}, {"$inc": {"count": 1}}
    )
    assert (await store.get("conv", "org_a", "c1") or {})["count"] == 1
    with pytest.raises(DuplicateKey):
        await insert_then_update(
            store, "msgs", "org_a", {"_id": "m1"}, "conv", {"_id": "c1"}, {"$inc": {"count": 1}}
        )
    assert (await store.get("conv", "org_a", "c1") or {})["count"] == 1

"""The Weaviate adapter at its boundary: what it asks the v4 async client to do.

No Weaviate server can run here, so a fake client stands in for `WeaviateAsyncClient`
at exactly the calls the adapter makes, answering with the client's own result types.
The same adapter runs the shared contract suite against a real server when
`WEAVIATE_URL` is set (tests/contract/test_vector_store.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from weaviate.classes.config import DataType, Tokenization
from weaviate.collections.classes.aggregate import AggregateReturn
from weaviate.collections.classes.batch import (
    BatchObject,
    BatchObjectReturn,
    DeleteManyReturn,
    ErrorObject,
)
from weaviate.collections.classes.filters import _Filters, _FilterValue
from weaviate.collections.classes.grpc import HybridFusion
from weaviate.collections.classes.internal import MetadataReturn, Object, QueryReturn
from weaviate.exceptions import WeaviateInsertManyAllFailedError

from vocalis.adapters.weaviate_vector_store import (
    COLLECTION_NAME,
    VECTOR_NAME,
    WeaviateVectorStore,
    object_uuid,
)
from vocalis.ports.vector_store import (
    CHUNK_FIELDS,
    BatchUpsertError,
    ChunkMetadata,
    ChunkRecord,
    QueryRequest,
    VectorStore,
)

DIM = 4


# --- the fake client ---------------------------------------------------------------------
@dataclass
class FakeTenantView:
    """`collection.with_tenant(name)`: records calls, answers scripted results."""

    client: FakeClient
    tenant: str

    @property
    def data(self) -> FakeTenantView:
        return self

    @property
    def query(self) -> FakeTenantView:
        return self

    @property
    def aggregate(self) -> FakeTenantView:
        return self

    async def insert_many(self, objects: list[Any]) -> BatchObjectReturn:
        self.client.calls.append(("insert_many", self.tenant, objects))
        outcome = self.client.insert_outcomes.pop(0) if self.client.insert_outcomes else {}
        if outcome == "all_fail":
            raise WeaviateInsertManyAllFailedError("store is read-only")
        errors = {
            index: ErrorObject(message, _batch_object(objects[index], index))
            for index, message in outcome.items()
        }
        return BatchObjectReturn(errors=errors, has_errors=bool(errors))

    async def delete_many(self, where: _Filters) -> DeleteManyReturn[None]:
        self.client.calls.append(("delete_many", self.tenant, where))
        successful = self.client.delete_rounds.pop(0) if self.client.delete_rounds else 0
        return DeleteManyReturn(failed=0, matches=successful, objects=None, successful=successful)

    async def hybrid(self, **kwargs: Any) -> QueryReturn[Any, Any]:
        self.client.calls.append(("hybrid", self.tenant, kwargs))
        return QueryReturn(objects=self.client.query_objects)

    async def near_vector(self, **kwargs: Any) -> QueryReturn[Any, Any]:
        self.client.calls.append(("near_vector", self.tenant, kwargs))
        return QueryReturn(objects=self.client.query_objects)

    async def over_all(self, **kwargs: Any) -> AggregateReturn:
        self.client.calls.append(("over_all", self.tenant, kwargs))
        return AggregateReturn(properties={}, total_count=self.client.total_count)


@dataclass
class FakeTenants:
    client: FakeClient

    async def exists(self, tenant: str) -> bool:
        self.client.calls.append(("tenants.exists", tenant, None))
        return tenant in self.client.tenants


@dataclass
class FakeCollection:
    client: FakeClient
    name: str

    @property
    def tenants(self) -> FakeTenants:
        return FakeTenants(self.client)

    def with_tenant(self, tenant: str) -> FakeTenantView:
        return FakeTenantView(self.client, tenant)


@dataclass
class FakeCollections:
    client: FakeClient

    async def exists(self, name: str) -> bool:
        return name in self.client.collections_created

    async def create(self, name: str, **config: Any) -> None:
        self.client.calls.append(("create", name, config))
        self.client.collections_created[name] = config

    def use(self, name: str) -> FakeCollection:
        return FakeCollection(self.client, name)


@dataclass
class FakeClient:
    """Stands in for `weaviate.WeaviateAsyncClient`."""

    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    collections_created: dict[str, dict[str, Any]] = field(default_factory=dict)
    tenants: set[str] = field(default_factory=set)
    insert_outcomes: list[Any] = field(default_factory=list)
    delete_rounds: list[int] = field(default_factory=list)
    query_objects: list[Object[Any, Any]] = field(default_factory=list)
    total_count: int = 0
    ready: bool = True

    @property
    def collections(self) -> FakeCollections:
        return FakeCollections(self)

    async def is_ready(self) -> bool:
        return self.ready

    async def close(self) -> None:
        self.calls.append(("close", "", None))

    def named(self, name: str) -> list[tuple[str, str, Any]]:
        return [call for call in self.calls if call[0] == name]


def _batch_object(obj: Any, index: int) -> BatchObject:
    return BatchObject(collection=COLLECTION_NAME, uuid=obj.uuid, index=index)


def record(
    chunk_id: str, *, vector: list[float] | None = None, page: int | None = 2
) -> ChunkRecord:
    return ChunkRecord(
        id=chunk_id,
        kb_id="kb_1",
        document_id="doc_1",
        document_name="Guide.pdf",
        version=3,
        text=f"text {chunk_id}",
        vector=vector if vector is not None else [1.0, 0.0, 0.0, 0.0],
        metadata=ChunkMetadata(chunk_index=5, page=page, section="Intro"),
    )


def hit(
    chunk_id: str, *, score: float | None = None, distance: float | None = None
) -> Object[Any, Any]:
    return Object(
        uuid=object_uuid(chunk_id),
        metadata=MetadataReturn(score=score, distance=distance),
        properties={
            "chunk_id": chunk_id,
            "kb_id": "kb_1",
            "document_id": "doc_1",
            "document_name": "Guide.pdf",
            "version": 3,
            "text": f"text {chunk_id}",
            "chunk_index": 5,
            "page": 2,
            "section": "Intro",
        },
        references=None,
        vector={VECTOR_NAME: [0.0, 1.0, 0.0, 0.0]},
        collection=COLLECTION_NAME,
    )


def flatten(filters: _Filters | None) -> set[tuple[str, str, Any]]:
    """A filter tree as a set of (property, operator, value) leaves (all ANDed here)."""
    if filters is None:
        return set()
    if isinstance(filters, _FilterValue):
        value = tuple(filters.value) if isinstance(filters.value, list) else filters.value
        return {(str(filters.target), filters.operator.value, value)}
    assert type(filters).__name__ == "_FilterAnd", "only AND combinations are expected"
    leaves: set[tuple[str, str, Any]] = set()
    for child in filters.filters:  # type: ignore[attr-defined]
        leaves |= flatten(child)
    return leaves


@pytest.fixture
def client() -> FakeClient:
    return FakeClient(tenants={"org_a"})


@pytest.fixture
def store(client: FakeClient) -> WeaviateVectorStore:
    return WeaviateVectorStore(client, dimensions=DIM, batch_size=2)


# --- collection and tenants ----------------------------------------------------------------
def test_adapter_satisfies_the_port(store: WeaviateVectorStore) -> None:
    assert isinstance(store, VectorStore)


async def test_ensure_collection_creates_a_multi_tenant_collection(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    await store.ensure_collection()
    [(_, name, config)] = client.named("create")
    assert name == COLLECTION_NAME
    tenancy = config["multi_tenancy_config"]
    assert (tenancy.enabled, tenancy.autoTenantCreation, tenancy.autoTenantActivation) == (
        True,
        True,
        True,
    )


async def test_collection_schema_follows_chunk_fields(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    await store.ensure_collection()
    properties = {p.name: p for p in client.collections_created[COLLECTION_NAME]["properties"]}
    assert list(properties) == [spec.name for spec in CHUNK_FIELDS]
    assert properties["version"].dataType == DataType.INT
    assert properties["text"].tokenization == Tokenization.WORD
    assert properties["text"].indexSearchable is True
    assert properties["kb_id"].tokenization == Tokenization.FIELD
    assert properties["kb_id"].indexSearchable is False


async def test_collection_uses_our_own_vectors_with_cosine_hnsw(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    await store.ensure_collection()
    vector_config = client.collections_created[COLLECTION_NAME]["vector_config"]
    assert vector_config.name == VECTOR_NAME
    assert vector_config.vectorizer.vectorizer.value == "none"
    assert vector_config.vectorIndexConfig.distance.value == "cosine"


async def test_ensure_collection_leaves_an_existing_collection_alone(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    client.collections_created[COLLECTION_NAME] = {}
    await store.ensure_collection()
    assert client.named("create") == []


# --- batch import ---------------------------------------------------------------------------
async def test_upsert_writes_to_the_orgs_tenant_in_batches(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    written = await store.upsert("org_new", [record("c1"), record("c2"), record("c3")])
    assert written == 3
    inserts = client.named("insert_many")
    assert [(tenant, len(objs)) for _, tenant, objs in inserts] == [("org_new", 2), ("org_new", 1)]


async def test_upsert_sends_stable_uuids_properties_and_the_named_vector(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    await store.upsert("org_a", [record("c1", page=None)])
    [(_, _, [obj])] = client.named("insert_many")
    assert obj.uuid == object_uuid("c1")
    assert isinstance(obj.uuid, uuid.UUID) and obj.uuid.version == 5  # same id, same object
    assert obj.vector == {VECTOR_NAME: [1.0, 0.0, 0.0, 0.0]}
    assert obj.properties == {
        "chunk_id": "c1",
        "kb_id": "kb_1",
        "document_id": "doc_1",
        "document_name": "Guide.pdf",
        "version": 3,
        "text": "text c1",
        "chunk_index": 5,
        "section": "Intro",
    }


async def test_per_object_import_errors_name_the_failed_chunks(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    client.insert_outcomes = [{1: "property page: invalid integer"}, {}]
    with pytest.raises(BatchUpsertError) as caught:
        await store.upsert("org_a", [record("c1"), record("c2"), record("c3")])
    assert caught.value.failed == {"c2": "property page: invalid integer"}
    assert caught.value.succeeded == 2


async def test_a_batch_that_fails_entirely_reports_every_chunk(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    client.insert_outcomes = ["all_fail", {}]
    with pytest.raises(BatchUpsertError) as caught:
        await store.upsert("org_a", [record("c1"), record("c2"), record("c3")])
    assert set(caught.value.failed) == {"c1", "c2"}
    assert "read-only" in caught.value.failed["c1"]
    assert caught.value.succeeded == 1


async def test_invalid_records_are_reported_without_being_sent(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    with pytest.raises(BatchUpsertError) as caught:
        await store.upsert("org_a", [record("bad", vector=[1.0]), record("good")])
    assert list(caught.value.failed) == ["bad"]
    [(_, _, objects)] = client.named("insert_many")
    assert [o.properties["chunk_id"] for o in objects] == ["good"]


async def test_a_malformed_org_id_never_becomes_a_tenant(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    with pytest.raises(ValueError, match="invalid org id"):
        await store.upsert("org a/../b", [record("c1")])
    assert client.calls == []


# --- queries --------------------------------------------------------------------------------
async def test_text_queries_are_hybrid_with_relative_score_fusion(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    client.query_objects = [hit("c1", score=0.8)]
    await store.query(
        "org_a", QueryRequest(vector=[0.0, 1.0, 0.0, 0.0], text="refund policy", top_k=7, alpha=0.6)
    )
    [(_, tenant, kwargs)] = client.named("hybrid")
    assert tenant == "org_a"
    assert kwargs["query"] == "refund policy"
    assert kwargs["vector"] == [0.0, 1.0, 0.0, 0.0]
    assert kwargs["target_vector"] == VECTOR_NAME
    assert kwargs["alpha"] == 0.6
    assert kwargs["limit"] == 7
    assert kwargs["fusion_type"] == HybridFusion.RELATIVE_SCORE
    assert kwargs["query_properties"] == ["text"]


async def test_query_filters_combine_kbs_and_metadata(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    request = QueryRequest(
        vector=[1.0, 0.0, 0.0, 0.0],
        text="q",
        kb_ids=["kb_1", "kb_2"],
        filters={"page": 4, "document_id": ["doc_1", "doc_2"], "section": "Intro"},
    )
    await store.query("org_a", request)
    [(_, _, kwargs)] = client.named("hybrid")
    assert flatten(kwargs["filters"]) == {
        ("kb_id", "ContainsAny", ("kb_1", "kb_2")),
        ("page", "Equal", 4),
        ("document_id", "ContainsAny", ("doc_1", "doc_2")),
        ("section", "Equal", "Intro"),
    }


async def test_a_single_kb_is_an_equality_filter(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    await store.query("org_a", QueryRequest(vector=[1.0, 0, 0, 0], text="q", kb_ids=["kb_9"]))
    [(_, _, kwargs)] = client.named("hybrid")
    assert flatten(kwargs["filters"]) == {("kb_id", "Equal", "kb_9")}


async def test_queries_without_text_are_pure_vector_searches(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    client.query_objects = [hit("c1", distance=0.25)]
    [result] = await store.query("org_a", QueryRequest(vector=[1.0, 0, 0, 0], top_k=3))
    [(_, _, kwargs)] = client.named("near_vector")
    assert kwargs["target_vector"] == VECTOR_NAME
    assert kwargs["limit"] == 3
    assert client.named("hybrid") == []
    assert result.score == pytest.approx(0.75)  # cosine distance 0.25 = similarity 0.75


async def test_alpha_one_skips_bm25(store: WeaviateVectorStore, client: FakeClient) -> None:
    await store.query("org_a", QueryRequest(vector=[1.0, 0, 0, 0], text="words", alpha=1.0))
    assert len(client.named("near_vector")) == 1
    assert client.named("hybrid") == []


async def test_results_map_to_scored_chunks_with_citation_metadata(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    client.query_objects = [hit("c1", score=0.9), hit("c2", score=0.4)]
    results = await store.query(
        "org_a", QueryRequest(vector=[1.0, 0, 0, 0], text="q", include_vectors=True)
    )
    assert [(r.id, r.score) for r in results] == [("c1", 0.9), ("c2", 0.4)]
    assert results[0].metadata == ChunkMetadata(chunk_index=5, page=2, section="Intro")
    assert results[0].document_name == "Guide.pdf"
    assert results[0].vector == [0.0, 1.0, 0.0, 0.0]


async def test_score_threshold_drops_weaker_hits(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    client.query_objects = [hit("c1", score=0.9), hit("c2", score=0.4)]
    results = await store.query(
        "org_a", QueryRequest(vector=[1.0, 0, 0, 0], text="q", score_threshold=0.5)
    )
    assert [r.id for r in results] == ["c1"]


async def test_querying_an_org_without_a_tenant_returns_nothing_and_asks_nothing(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    assert await store.query("org_none", QueryRequest(vector=[1.0, 0, 0, 0], text="q")) == []
    assert client.named("hybrid") == [] and client.named("near_vector") == []


async def test_unknown_filter_fields_never_reach_weaviate(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    with pytest.raises(ValueError, match="cannot filter"):
        await store.query("org_a", QueryRequest(vector=[1.0, 0, 0, 0], filters={"tenant": "x"}))
    assert client.calls == []


# --- deletes and counts ----------------------------------------------------------------------
async def test_delete_document_filters_on_document_and_version(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    client.delete_rounds = [4, 0]
    assert await store.delete_document("org_a", "doc_1", keep_version=3) == 4
    (_, tenant, where), *_ = client.named("delete_many")
    assert tenant == "org_a"
    assert flatten(where) == {("document_id", "Equal", "doc_1"), ("version", "NotEqual", 3)}


async def test_deletes_repeat_until_nothing_matches(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    client.delete_rounds = [10_000, 10_000, 17, 0]
    assert await store.delete_kb("org_a", "kb_1") == 20_017
    assert len(client.named("delete_many")) == 4


async def test_deleting_in_an_org_without_a_tenant_is_a_no_op(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    assert await store.delete_kb("org_none", "kb_1") == 0
    assert client.named("delete_many") == []


async def test_count_aggregates_over_the_tenant_with_an_optional_kb_filter(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    client.total_count = 12
    assert await store.count("org_a", "kb_2") == 12
    [(_, tenant, kwargs)] = client.named("over_all")
    assert tenant == "org_a"
    assert flatten(kwargs["filters"]) == {("kb_id", "Equal", "kb_2")}


async def test_ping_fails_when_weaviate_is_not_ready(
    store: WeaviateVectorStore, client: FakeClient
) -> None:
    client.ready = False
    with pytest.raises(ConnectionError):
        await store.ping()

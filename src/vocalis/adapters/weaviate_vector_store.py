"""The production `VectorStore`: Weaviate (v4 client) with native multi-tenancy.

One collection (`COLLECTION_NAME`) holds every organisation's chunks; its schema is built
from `CHUNK_FIELDS` by `collection_properties()`. Multi-tenancy is on, the organisation
id is the tenant, and tenants are created (and re-activated) automatically on first
write, so each organisation's chunks live in their own shard: isolation is Weaviate's,
not a filter's. Vectors are supplied by us (no vectorizer) in the named vector
`VECTOR_NAME`, HNSW with cosine distance. Queries are hybrid BM25 + vector with
relative-score fusion; `alpha` and scores mean what the port says.

Everything talks to the async client through a few calls (`collections.exists/create/
use`, `with_tenant`, `tenants.exists`, `data.insert_many/delete_many`, `query.hybrid/
near_vector`, `aggregate.over_all`), so the unit tests drive the adapter with a fake
client at exactly that boundary.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import weaviate
from weaviate.classes.config import (
    Configure,
    DataType,
    Property,
    Tokenization,
    VectorDistances,
)
from weaviate.classes.data import DataObject
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.classes.query import Filter, HybridFusion, MetadataQuery
from weaviate.collections.classes.filters import _Filters
from weaviate.exceptions import WeaviateInsertManyAllFailedError

from vocalis.ports.vector_store import (
    CHUNK_FIELDS,
    BatchUpsertError,
    ChunkMetadata,
    ChunkRecord,
    QueryRequest,
    ScoredChunk,
    check_org_id,
    check_query,
    clamp_score,
    filter_values,
    record_problem,
)

COLLECTION_NAME = "VocalisChunk"
VECTOR_NAME = "chunk"
# Weaviate answers at most QUERY_MAXIMUM_RESULTS (10,000 by default) objects per
# delete_many; deleting more takes several rounds.
_MAX_DELETE_ROUNDS = 1_000
# Stable object UUIDs: re-indexing a chunk id replaces the object instead of adding one.
_UUID_NAMESPACE = uuid.UUID("5d1f6a55-0f4e-4e0b-9a55-7b0c6b1f7c11")


def collection_properties() -> list[Property]:
    """The collection's properties, from CHUNK_FIELDS."""
    properties = []
    for spec in CHUNK_FIELDS:
        if spec.type == "int":
            properties.append(
                Property(
                    name=spec.name,
                    data_type=DataType.INT,
                    description=spec.description,
                    index_filterable=spec.filterable,
                )
            )
            continue
        properties.append(
            Property(
                name=spec.name,
                data_type=DataType.TEXT,
                description=spec.description,
                index_filterable=spec.filterable,
                index_searchable=spec.keyword_searchable,
                # Ids and names match whole values; only the chunk text is split into words.
                tokenization=Tokenization.WORD if spec.keyword_searchable else Tokenization.FIELD,
            )
        )
    return properties


def object_uuid(chunk_id: str) -> uuid.UUID:
    """The Weaviate object UUID of a chunk id (unique within one tenant)."""
    return uuid.uuid5(_UUID_NAMESPACE, chunk_id)


def build_filters(request: QueryRequest) -> _Filters | None:
    """The Weaviate filter for a query's knowledge bases and metadata filters."""
    clauses: list[_Filters] = []
    if request.kb_ids:
        clauses.append(_any_of("kb_id", list(request.kb_ids)))
    for name, value in request.filters.items():
        clauses.append(_any_of(name, filter_values(value)))
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else Filter.all_of(clauses)


def _any_of(name: str, values: Sequence[str | int]) -> _Filters:
    prop = Filter.by_property(name)
    if len(values) == 1:
        return prop.equal(values[0])
    return prop.contains_any(list(values))  # type: ignore[arg-type]


async def connect_weaviate(
    url: str, *, api_key: str | None = None, grpc_port: int | None = None, timeout_s: int = 30
) -> weaviate.WeaviateAsyncClient:
    """A connected async client for `url` (http[s]://host:port); gRPC on 50051 unless given."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"WEAVIATE_URL must be http(s)://host[:port], got {url!r}")
    secure = parsed.scheme == "https"
    client = weaviate.use_async_with_custom(
        http_host=parsed.hostname,
        http_port=parsed.port or (443 if secure else 80),
        http_secure=secure,
        grpc_host=parsed.hostname,
        grpc_port=grpc_port or 50051,
        grpc_secure=secure,
        auth_credentials=Auth.api_key(api_key) if api_key else None,
        additional_config=AdditionalConfig(timeout=Timeout(init=timeout_s, query=timeout_s)),
    )
    await client.connect()
    return client


class WeaviateVectorStore:
    """Chunks in one multi-tenant Weaviate collection; see the module docstring."""

    name = "weaviate"

    def __init__(
        self,
        client: Any,
        *,
        dimensions: int,
        collection_name: str = COLLECTION_NAME,
        batch_size: int = 200,
    ) -> None:
        # `client` is a `weaviate.WeaviateAsyncClient` (typed Any: tests pass a fake).
        self._client = client
        self._dimensions = dimensions
        self._collection_name = collection_name
        self._batch_size = batch_size
        self._known_tenants: set[str] = set()

    @property
    def dimensions(self) -> int:
        """The vector size the collection expects."""
        return self._dimensions

    @property
    def collection_name(self) -> str:
        """The Weaviate collection this store uses."""
        return self._collection_name

    # --- lifecycle ---------------------------------------------------------------------
    async def ensure_collection(self) -> None:
        """Create the multi-tenant collection if it does not exist."""
        if await self._client.collections.exists(self._collection_name):
            return
        await self._client.collections.create(
            self._collection_name,
            description="Vocalis knowledge-base chunks; one tenant per organisation.",
            properties=collection_properties(),
            vector_config=Configure.Vectors.self_provided(
                name=VECTOR_NAME,
                vector_index_config=Configure.VectorIndex.hnsw(
                    distance_metric=VectorDistances.COSINE
                ),
            ),
            multi_tenancy_config=Configure.multi_tenancy(
                enabled=True, auto_tenant_creation=True, auto_tenant_activation=True
            ),
            inverted_index_config=Configure.inverted_index(index_null_state=True),
        )

    async def ping(self) -> None:
        """Raise unless Weaviate reports itself ready."""
        if not await self._client.is_ready():
            raise ConnectionError("Weaviate is not ready")

    async def close(self) -> None:
        """Close the client."""
        await self._client.close()

    def _collection(self) -> Any:
        return self._client.collections.use(self._collection_name)

    def _tenant(self, org_id: str) -> Any:
        return self._collection().with_tenant(check_org_id(org_id))

    async def _tenant_exists(self, org_id: str) -> bool:
        """Whether the org has a tenant yet (reads on a missing tenant are errors)."""
        check_org_id(org_id)
        if org_id in self._known_tenants:
            return True
        exists = bool(await self._collection().tenants.exists(org_id))
        if exists:
            self._known_tenants.add(org_id)  # tenants are never removed by us
        return exists

    # --- writes ------------------------------------------------------------------------
    async def upsert(self, org_id: str, chunks: Sequence[ChunkRecord]) -> int:
        """Batch-import chunks into the org's tenant; per-object failures are collected."""
        tenant = self._tenant(org_id)
        failed: dict[str, str] = {}
        good: dict[str, ChunkRecord] = {}
        for record in chunks:
            problem = record_problem(record, self._dimensions)
            if problem:
                failed[str(record.id)] = problem
            else:
                good[record.id] = record
        records = list(good.values())
        written = 0
        for start in range(0, len(records), self._batch_size):
            batch = records[start : start + self._batch_size]
            written += await self._insert_batch(tenant, batch, failed)
        if written:
            self._known_tenants.add(org_id)
        if failed:
            raise BatchUpsertError(failed, succeeded=written)
        return written

    async def _insert_batch(
        self, tenant: Any, batch: Sequence[ChunkRecord], failed: dict[str, str]
    ) -> int:
        objects = [
            DataObject(
                uuid=object_uuid(record.id),
                properties=_properties(record),
                vector={VECTOR_NAME: [float(x) for x in record.vector]},
            )
            for record in batch
        ]
        try:
            result = await tenant.data.insert_many(objects)
        except WeaviateInsertManyAllFailedError as exc:
            for record in batch:
                failed[record.id] = str(exc)
            return 0
        for index, error in result.errors.items():
            failed[batch[index].id] = error.message
        return len(batch) - len(result.errors)

    async def delete_document(
        self,
        org_id: str,
        document_id: str,
        version: int | None = None,
        *,
        keep_version: int | None = None,
    ) -> int:
        """Delete one version, all versions but `keep_version`, or every version."""
        clauses = [Filter.by_property("document_id").equal(document_id)]
        if version is not None:
            clauses.append(Filter.by_property("version").equal(version))
        if keep_version is not None:
            clauses.append(Filter.by_property("version").not_equal(keep_version))
        return await self._delete_where(org_id, Filter.all_of(clauses))

    async def delete_kb(self, org_id: str, kb_id: str) -> int:
        """Delete every chunk of a knowledge base."""
        return await self._delete_where(org_id, Filter.by_property("kb_id").equal(kb_id))

    async def _delete_where(self, org_id: str, where: _Filters) -> int:
        if not await self._tenant_exists(org_id):
            return 0
        tenant = self._tenant(org_id)
        deleted = 0
        for _ in range(_MAX_DELETE_ROUNDS):
            result = await tenant.data.delete_many(where=where)
            if result.failed:
                raise RuntimeError(f"Weaviate failed to delete {result.failed} object(s)")
            deleted += result.successful
            if result.matches == 0 or result.successful == 0:
                return deleted
        raise RuntimeError("Weaviate delete_many did not converge")

    # --- reads -------------------------------------------------------------------------
    async def count(self, org_id: str, kb_id: str | None = None) -> int:
        """Chunks in the org's tenant, or in one of its knowledge bases."""
        if not await self._tenant_exists(org_id):
            return 0
        filters = Filter.by_property("kb_id").equal(kb_id) if kb_id is not None else None
        result = await self._tenant(org_id).aggregate.over_all(total_count=True, filters=filters)
        return int(result.total_count or 0)

    async def query(self, org_id: str, request: QueryRequest) -> list[ScoredChunk]:
        """Hybrid (or pure vector) search within the org's tenant."""
        check_query(request, self._dimensions)
        if request.kb_ids is not None and not request.kb_ids:
            return []
        if not await self._tenant_exists(org_id):
            return []
        tenant = self._tenant(org_id)
        filters = build_filters(request)
        vector = [float(x) for x in request.vector]
        if request.text and request.text.strip() and request.alpha < 1.0:
            response = await tenant.query.hybrid(
                query=request.text,
                vector=vector,
                target_vector=VECTOR_NAME,
                alpha=request.alpha,
                fusion_type=HybridFusion.RELATIVE_SCORE,
                query_properties=["text"],
                filters=filters,
                limit=request.top_k,
                include_vector=request.include_vectors,
                return_metadata=MetadataQuery(score=True),
            )
            scores = [obj.metadata.score or 0.0 for obj in response.objects]
        else:
            response = await tenant.query.near_vector(
                near_vector=vector,
                target_vector=VECTOR_NAME,
                filters=filters,
                limit=request.top_k,
                include_vector=request.include_vectors,
                return_metadata=MetadataQuery(distance=True),
            )
            # Cosine distance is 1 - cosine similarity.
            scores = [1.0 - (obj.metadata.distance or 0.0) for obj in response.objects]
        results = []
        for obj, raw in zip(response.objects, scores, strict=True):
            score = clamp_score(raw)
            if request.score_threshold is not None and score < request.score_threshold:
                continue
            results.append(_scored(obj, score, request.include_vectors))
        return results


def _properties(record: ChunkRecord) -> dict[str, Any]:
    # A missing property is Weaviate's null; None values are left out rather than sent.
    values = {
        "chunk_id": record.id,
        "kb_id": record.kb_id,
        "document_id": record.document_id,
        "document_name": record.document_name,
        "version": record.version,
        "text": record.text,
        "chunk_index": record.metadata.chunk_index,
        "page": record.metadata.page,
        "section": record.metadata.section,
    }
    return {name: value for name, value in values.items() if value is not None}


def _scored(obj: Any, score: float, include_vector: bool) -> ScoredChunk:
    props = obj.properties
    vector = None
    if include_vector and obj.vector:
        vector = [float(x) for x in obj.vector.get(VECTOR_NAME, [])]
    return ScoredChunk(
        id=str(props["chunk_id"]),
        kb_id=str(props["kb_id"]),
        document_id=str(props["document_id"]),
        document_name=str(props["document_name"]),
        version=int(props["version"]),
        text=str(props["text"]),
        metadata=ChunkMetadata(
            chunk_index=int(props["chunk_index"]),
            page=int(props["page"]) if props.get("page") is not None else None,
            section=props.get("section"),
        ),
        score=score,
        vector=vector,
    )

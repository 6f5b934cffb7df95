"""The embedded `VectorStore`: LanceDB on local disk, vector + native full-text hybrid search.

One table holds every organisation's chunks; each call is confined to one organisation by
an `org_id` predicate that is always applied *before* ranking (LanceDB prefilters), with
every value escaped and every field name taken from an allow-list. The text column has
LanceDB's native BM25 index (no tantivy); once the table passes `ann_index_threshold`
rows, an IVF_HNSW_SQ vector index and scalar indexes on the filter columns are built, and
rows added later are folded in by `optimize()` as they accumulate. Vector and BM25
candidates are fused exactly as Weaviate's relative-score fusion does (`fused_scores`),
so `alpha` and scores mean the same on both backends.

The vector half of a query that names its knowledge bases and has no other filter runs on
an in-process HNSW graph per (organisation, knowledge base) instead of LanceDB's vector
search (`kb_vector_index`: exact-search recall at a fraction of the CPU); filtered queries
and queries over every knowledge base use LanceDB's prefiltered search. The two halves of
a hybrid query run concurrently.

LanceDB's Python API is asynchronous over its own Rust runtime: no call blocks the loop.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import FTS, BTree, IvfHnswSq

from vocalis.adapters.kb_vector_index import HnswSettings, KbIndexes
from vocalis.ports.vector_store import (
    BatchUpsertError,
    ChunkMetadata,
    ChunkRecord,
    QueryRequest,
    ScoredChunk,
    VectorStoreMismatch,
    check_org_id,
    check_query,
    clamp_score,
    filter_values,
    record_problem,
)

TABLE_NAME = "chunks"
_RESULT_COLUMNS = [
    "id",
    "kb_id",
    "document_id",
    "document_name",
    "version",
    "text",
    "chunk_index",
    "page",
    "section",
    "vector",
]


def chunk_schema(dimensions: int) -> pa.Schema:
    """The Arrow schema of the chunks table (CHUNK_FIELDS plus org_id and the vector)."""
    return pa.schema(
        [
            pa.field("org_id", pa.string(), nullable=False),
            pa.field("id", pa.string(), nullable=False),
            pa.field("kb_id", pa.string(), nullable=False),
            pa.field("document_id", pa.string(), nullable=False),
            pa.field("document_name", pa.string(), nullable=False),
            pa.field("version", pa.int64(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("chunk_index", pa.int32(), nullable=False),
            pa.field("page", pa.int32(), nullable=True),
            pa.field("section", pa.string(), nullable=True),
            pa.field("vector", pa.list_(pa.float32(), dimensions), nullable=False),
        ]
    )


def sql_literal(value: str | int) -> str:
    """A value as a SQL literal: strings quoted with quotes doubled, integers checked."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"unsupported filter value {value!r}")
    if isinstance(value, int):
        return str(int(value))
    if "\x00" in value:
        raise ValueError("filter values must not contain NUL")
    return "'" + value.replace("'", "''") + "'"


def _in(column: str, values: Sequence[str | int]) -> str:
    if len(values) == 1:
        return f"{column} = {sql_literal(values[0])}"
    return f"{column} IN ({', '.join(sql_literal(v) for v in values)})"


class LanceDBVectorStore:
    """Chunks in one LanceDB table under `path`; see the module docstring."""

    name = "lancedb"

    def __init__(
        self,
        path: str | Path,
        *,
        dimensions: int,
        ann_index_threshold: int = 50_000,
        reindex_after_rows: int = 10_000,
        candidate_multiplier: int = 4,
        read_consistency: timedelta = timedelta(0),
        in_process_index: bool = True,
        hnsw: HnswSettings | None = None,
    ) -> None:
        self._path = Path(path).resolve()
        self._dimensions = dimensions
        self._ann_index_threshold = ann_index_threshold
        self._reindex_after_rows = reindex_after_rows
        self._candidate_multiplier = candidate_multiplier
        # The API reads what the ingest worker (another process) writes: timedelta(0)
        # checks for a newer table version on every read, so "ready" means queryable.
        self._read_consistency = read_consistency
        self._db: lancedb.AsyncConnection | None = None
        self._table: lancedb.AsyncTable | None = None
        self._rows_since_maintenance = 0
        # Per knowledge base HNSW graphs for the vector half (see kb_vector_index).
        self._indexes = (
            KbIndexes(self._path / "hnsw", dimensions, hnsw) if in_process_index else None
        )

    @property
    def dimensions(self) -> int:
        """The vector size of the table."""
        return self._dimensions

    # --- lifecycle ---------------------------------------------------------------------
    async def ensure_collection(self) -> None:
        """Open or create the table and its full-text index."""
        self._path.mkdir(parents=True, exist_ok=True)
        self._db = await lancedb.connect_async(
            str(self._path), read_consistency_interval=self._read_consistency
        )
        try:
            table = await self._db.open_table(TABLE_NAME)
        except ValueError:  # not created yet; exist_ok covers a concurrent creator
            table = await self._db.create_table(
                TABLE_NAME, schema=chunk_schema(self._dimensions), exist_ok=True
            )
        vector_type = (await table.schema()).field("vector").type
        if getattr(vector_type, "list_size", None) != self._dimensions:
            raise VectorStoreMismatch(
                f"{self._path}/{TABLE_NAME} stores vectors of type {vector_type}, "
                f"not {self._dimensions} dimensions; re-index into a new data dir"
            )
        if not await _has_index(table, "text_idx"):
            try:
                await table.create_index("text", config=FTS(), replace=False)
            except Exception:
                # Another process (API or worker) may have created it a moment ago.
                if not await _has_index(table, "text_idx"):
                    raise
        self._table = table

    async def ping(self) -> None:
        """Count rows: fails if the table cannot be read."""
        await self._tbl().count_rows()

    async def close(self) -> None:
        """Save changed HNSW graphs, then close the table handle."""
        if self._indexes is not None and self._table is not None:
            await self._indexes.save_all()
        if self._table is not None:
            self._table.close()
            self._table = None

    def _tbl(self) -> lancedb.AsyncTable:
        if self._table is None:
            raise RuntimeError("call ensure_collection() first")
        return self._table

    # --- writes ------------------------------------------------------------------------
    async def upsert(self, org_id: str, chunks: Sequence[ChunkRecord]) -> int:
        """Insert or replace chunks by (org_id, id); report the ones that cannot be stored."""
        check_org_id(org_id)
        failed: dict[str, str] = {}
        good: dict[str, ChunkRecord] = {}
        for record in chunks:
            problem = record_problem(record, self._dimensions)
            if problem:
                failed[str(record.id)] = problem
            else:
                good[record.id] = record  # the last of duplicate ids wins
        if good:
            rows = pa.Table.from_pylist(
                [_row(org_id, r) for r in good.values()], schema=chunk_schema(self._dimensions)
            )
            await (
                self._tbl()
                .merge_insert(["org_id", "id"])
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(rows)
            )
            self._rows_since_maintenance += len(good)
            await self._maintain_indexes()
        if failed:
            raise BatchUpsertError(failed, succeeded=len(good))
        return len(good)

    async def delete_document(
        self,
        org_id: str,
        document_id: str,
        version: int | None = None,
        *,
        keep_version: int | None = None,
    ) -> int:
        """Delete one version, all versions but `keep_version`, or every version."""
        where = [self._org(org_id), _in("document_id", [document_id])]
        if version is not None:
            where.append(f"version = {sql_literal(version)}")
        if keep_version is not None:
            where.append(f"version <> {sql_literal(keep_version)}")
        return await self._delete(" AND ".join(where))

    async def delete_kb(self, org_id: str, kb_id: str) -> int:
        """Delete every chunk of a knowledge base."""
        deleted = await self._delete(f"{self._org(org_id)} AND {_in('kb_id', [kb_id])}")
        if self._indexes is not None:
            self._indexes.forget(org_id, kb_id)
        return deleted

    async def _delete(self, where: str) -> int:
        result = await self._tbl().delete(where)
        return int(getattr(result, "num_deleted_rows", 0) or 0)

    async def optimize(self, *, cleanup_older_than: timedelta | None = None) -> None:
        """Fold new rows into the indexes, compact files, and drop old versions' data.

        Deleted rows stay in older table versions until cleaned up; pass
        `cleanup_older_than=timedelta(0)` to purge them from disk now.
        """
        await self._tbl().optimize(cleanup_older_than=cleanup_older_than)
        self._rows_since_maintenance = 0

    async def _maintain_indexes(self) -> None:
        """Build the ANN index past the threshold; fold in new rows every so often."""
        if self._rows_since_maintenance < min(self._reindex_after_rows, self._ann_index_threshold):
            return
        table = self._tbl()
        rows = await table.count_rows()
        if rows >= self._ann_index_threshold and not await _has_index(table, "vector_idx"):
            await self.build_indexes()
        elif self._rows_since_maintenance >= self._reindex_after_rows:
            await self.optimize()
        self._rows_since_maintenance = 0

    async def build_indexes(self) -> None:
        """Build the IVF_HNSW_SQ vector index and scalar indexes on the filter columns."""
        table = self._tbl()
        rows = await table.count_rows()
        # ~sqrt(n) partitions is LanceDB's guidance for IVF; keep at least one.
        partitions = max(1, int(math.sqrt(rows)))
        await table.create_index(
            "vector",
            config=IvfHnswSq(distance_type="cosine", num_partitions=partitions),
            replace=True,
        )
        for column in ("org_id", "kb_id", "document_id"):
            await table.create_index(column, config=BTree(), replace=True)
        await table.optimize()

    # --- reads -------------------------------------------------------------------------
    async def count(self, org_id: str, kb_id: str | None = None) -> int:
        """Chunks of an organisation, or of one of its knowledge bases."""
        where = self._org(org_id)
        if kb_id is not None:
            where += f" AND {_in('kb_id', [kb_id])}"
        return int(await self._tbl().count_rows(where))

    async def query(self, org_id: str, request: QueryRequest) -> list[ScoredChunk]:
        """Hybrid search within one organisation; see the module docstring for scoring."""
        check_query(request, self._dimensions)
        where = self._where(org_id, request)
        if request.kb_ids is not None and not request.kb_ids:
            return []  # no knowledge base selected: nothing, never everything
        candidates = max(request.top_k * self._candidate_multiplier, 20)
        query_vector = np.asarray(request.vector, dtype=np.float32)
        if self._indexes is not None and request.kb_ids and not request.filters:
            vector_half = self._indexed_vector_hits(
                org_id, request.kb_ids, query_vector, candidates, request.alpha
            )
        else:
            vector_half = self._vector_hits(query_vector, where, candidates, request.alpha)
        vector_hits, keyword_hits = await asyncio.gather(
            vector_half, self._keyword_hits(request.text, where, candidates, request.alpha)
        )
        fused = _fuse(vector_hits, keyword_hits, query_vector, request.alpha)
        results = []
        for row, score in fused[: request.top_k]:
            if request.score_threshold is not None and score < request.score_threshold:
                break
            results.append(_scored(row, score, request.include_vectors))
        return results

    async def _vector_hits(
        self, vector: np.ndarray[Any, Any], where: str, limit: int, alpha: float
    ) -> list[dict[str, Any]]:
        if alpha <= 0.0:
            return []
        query = (
            self._tbl()
            .vector_search(vector)
            .distance_type("cosine")
            .where(where)
            .select(_RESULT_COLUMNS)
            .limit(limit)
        )
        # Search more of the index than the default; recall matters more than a few ms.
        query = query.nprobes(20).ef(max(64, limit * 2))
        return list(await query.to_list())

    async def _indexed_vector_hits(
        self,
        org_id: str,
        kb_ids: Sequence[str],
        vector: np.ndarray[Any, Any],
        limit: int,
        alpha: float,
    ) -> list[dict[str, Any]]:
        """The vector half on the HNSW graphs; rows read back by row id and checked."""
        if alpha <= 0.0 or self._indexes is None:
            return []
        table = self._tbl()
        hits = await self._indexes.search(table, org_id, kb_ids, vector, limit)
        if not hits:
            return []
        expected = {chunk_id: (kb_id, row_id) for kb_id, chunk_id, row_id, _ in hits}
        rows: dict[str, dict[str, Any]] = {}
        try:
            taken = (
                await table.take_row_ids([row_id for *_, row_id, _ in hits])
                .select([*_RESULT_COLUMNS, "org_id"])
                .with_row_id()
                .to_list()
            )
        except Exception:  # the rows moved (compaction) since the graph caught up
            taken = []
        for row in taken:
            want = expected.get(row["id"])
            # Never trust a row id alone: organisation, knowledge base and row must match.
            if want and row["org_id"] == org_id and (row["kb_id"], row["_rowid"]) == want:
                rows[row["id"]] = row
        missing = [chunk_id for chunk_id in expected if chunk_id not in rows]
        if missing:
            where = f"{self._org(org_id)} AND {_in('kb_id', list(kb_ids))} AND {_in('id', missing)}"
            for row in await table.query().where(where).select(_RESULT_COLUMNS).to_list():
                rows[row["id"]] = row
        return [rows[chunk_id] for chunk_id in expected if chunk_id in rows]

    async def _keyword_hits(
        self, text: str | None, where: str, limit: int, alpha: float
    ) -> list[dict[str, Any]]:
        if not text or not text.strip() or alpha >= 1.0:
            return []
        query = (
            self._tbl()
            .query()
            .nearest_to_text(text, columns="text")
            .where(where)
            .select([*_RESULT_COLUMNS, "_score"])
            .limit(limit)
        )
        return list(await query.to_list())

    def _org(self, org_id: str) -> str:
        return f"org_id = {sql_literal(check_org_id(org_id))}"

    def _where(self, org_id: str, request: QueryRequest) -> str:
        clauses = [self._org(org_id)]
        if request.kb_ids:
            clauses.append(_in("kb_id", list(request.kb_ids)))
        for name, value in request.filters.items():
            clauses.append(_in(name, filter_values(value)))  # names checked by check_query
        return " AND ".join(clauses)


async def _has_index(table: lancedb.AsyncTable, name: str) -> bool:
    return name in {index.name for index in await table.list_indices()}


def _row(org_id: str, record: ChunkRecord) -> dict[str, Any]:
    return {
        "org_id": org_id,
        "id": record.id,
        "kb_id": record.kb_id,
        "document_id": record.document_id,
        "document_name": record.document_name,
        "version": record.version,
        "text": record.text,
        "chunk_index": record.metadata.chunk_index,
        "page": record.metadata.page,
        "section": record.metadata.section,
        "vector": [float(x) for x in record.vector],
    }


def _fuse(
    vector_hits: Sequence[Mapping[str, Any]],
    keyword_hits: Sequence[Mapping[str, Any]],
    query_vector: np.ndarray[Any, Any],
    alpha: float,
) -> list[tuple[Mapping[str, Any], float]]:
    """Rank candidates by fused score, best first (see `fused_scores`)."""
    rows: dict[str, Mapping[str, Any]] = {hit["id"]: hit for hit in keyword_hits}
    for hit in vector_hits:
        rows.setdefault(hit["id"], hit)
    matrix = np.asarray([row["vector"] for row in rows.values()], dtype=np.float32)
    similarities = _cosine(matrix, query_vector) if rows else np.zeros(0, dtype=np.float32)
    bm25 = {hit["id"]: float(hit["_score"]) for hit in keyword_hits}
    scores = fused_scores(similarities.tolist(), [bm25.get(chunk_id) for chunk_id in rows], alpha)
    ranked = sorted(zip(rows.values(), scores, strict=True), key=lambda item: -item[1])
    return ranked


def fused_scores(
    similarities: Sequence[float], bm25: Sequence[float | None], alpha: float
) -> list[float]:
    """Weaviate's relative-score fusion over one candidate set.

    Pure vector search (alpha 1) keeps the absolute cosine similarity, so a threshold
    means "at least this similar". Otherwise each signal is min-max normalised over the
    candidates (a candidate the keyword search did not return scores 0 there) and mixed
    as `alpha * vector + (1 - alpha) * keyword`: hybrid scores rank well but are relative
    to the candidate set.
    """
    if alpha >= 1.0:
        return [clamp_score(s) for s in similarities]
    vector_part = _min_max(list(similarities))
    keyword_values = [b for b in bm25 if b is not None]
    keyword_norm = iter(_min_max(keyword_values))
    keyword_part = [next(keyword_norm) if b is not None else 0.0 for b in bm25]
    return [
        clamp_score(alpha * v + (1.0 - alpha) * k)
        for v, k in zip(vector_part, keyword_part, strict=True)
    ]


def _min_max(values: list[float]) -> list[float]:
    if not values:
        return []
    low, high = min(values), max(values)
    if high - low < 1e-9:
        return [1.0] * len(values)  # one candidate, or all tied: all equally best
    return [(v - low) / (high - low) for v in values]


def _cosine(matrix: np.ndarray[Any, Any], query: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    norms = np.linalg.norm(matrix, axis=1) * (float(np.linalg.norm(query)) or 1.0)
    return np.asarray((matrix @ query) / np.clip(norms, 1e-12, None), dtype=np.float32)


def _scored(row: Mapping[str, Any], score: float, include_vector: bool) -> ScoredChunk:
    return ScoredChunk(
        id=row["id"],
        kb_id=row["kb_id"],
        document_id=row["document_id"],
        document_name=row["document_name"],
        version=int(row["version"]),
        text=row["text"],
        metadata=ChunkMetadata(
            chunk_index=int(row["chunk_index"]), page=row["page"], section=row["section"]
        ),
        score=score,
        vector=[float(x) for x in row["vector"]] if include_vector else None,
    )

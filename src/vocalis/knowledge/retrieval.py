"""Retrieval: hybrid search across knowledge bases, with filters, threshold and MMR.

Every search is confined to one organisation (the vector store is always called with its
`org_id`). Hits are then checked against the relational rows: chunks of a deleted
document are dropped, and of a document being re-uploaded only one version is kept (the
indexed one), so a query never shows a passage twice nor one on its way out.

`KnowledgeRetriever` is the agent's `Retriever`; the query endpoint calls `search`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog
from sqlalchemy import select

from vocalis.core.backends import Backends
from vocalis.core.db import Database
from vocalis.core.errors import ValidationFailed
from vocalis.core.lazy import Lazy
from vocalis.core.metrics import RETRIEVAL_LATENCY
from vocalis.core.tracing import tracer
from vocalis.knowledge.embedding import embed
from vocalis.knowledge.models import KnowledgeDocument
from vocalis.ports.knowledge import KnowledgeEngines
from vocalis.ports.retriever import Passage
from vocalis.ports.vector_store import FilterValue, InvalidQuery, QueryRequest, ScoredChunk
from vocalis.settings import Settings

log = structlog.get_logger(__name__)

# Candidates fetched per result wanted: room for dropped stale chunks, and MMR's choice.
_OVERFETCH = 2
_MMR_OVERFETCH = 4


@dataclass(frozen=True)
class SearchOptions:
    """How to search: result count, filters, cut-off, fusion weight and diversity."""

    top_k: int = 5
    filters: Mapping[str, FilterValue] | None = None
    score_threshold: float | None = None
    alpha: float = 0.75
    mmr: bool = False
    mmr_lambda: float = 0.5


def default_options(settings: Settings, top_k: int | None = None) -> SearchOptions:
    """Search options from the settings."""
    return SearchOptions(
        top_k=top_k or settings.knowledge_top_k,
        score_threshold=settings.knowledge_score_threshold or None,
        alpha=settings.knowledge_hybrid_alpha,
        mmr_lambda=settings.knowledge_mmr_lambda,
    )


async def search(
    backends: Backends,
    *,
    org_id: str,
    kb_ids: Sequence[str],
    query: str,
    options: SearchOptions,
    caller: str = "query",
) -> list[ScoredChunk]:
    """The best chunks for `query` in the organisation's `kb_ids`, best first."""
    return await _search(
        backends.database,
        backends.knowledge,
        org_id=org_id,
        kb_ids=kb_ids,
        query=query,
        options=options,
        caller=caller,
    )


async def _search(
    database: Database,
    knowledge: Lazy[KnowledgeEngines],
    *,
    org_id: str,
    kb_ids: Sequence[str],
    query: str,
    options: SearchOptions,
    caller: str,
) -> list[ScoredChunk]:
    started = time.perf_counter()
    with tracer().start_as_current_span("rag.retrieve") as span:
        span.set_attribute("vocalis.org_id", org_id)
        span.set_attribute("vocalis.knowledge_base_ids", list(kb_ids))
        span.set_attribute("vocalis.retrieval.top_k", options.top_k)
        try:
            if not kb_ids or not query.strip():
                return []
            built = await knowledge.get()
            [vector] = await embed(built.embedder, [query], purpose="query")
            fetch = options.top_k * (_MMR_OVERFETCH if options.mmr else _OVERFETCH)
            request = QueryRequest(
                vector=vector,
                text=query,
                kb_ids=list(kb_ids),
                top_k=min(fetch, 1000),
                filters=dict(options.filters or {}),
                alpha=options.alpha,
                score_threshold=options.score_threshold,
                include_vectors=options.mmr,
            )
            try:
                candidates = await built.vector_store.query(org_id, request)
            except InvalidQuery as exc:  # an unknown filter field or a value out of range
                raise ValidationFailed(str(exc)) from exc
            except ValueError as exc:
                # The backend's own message holds its query text (with the organisation
                # and knowledge-base ids): logged, never sent.
                log.warning("retrieval_query_refused", error=str(exc))
                raise ValidationFailed("The filters cannot be applied to this query.") from exc
            live = await _live_chunks(database, org_id, candidates)
            if options.mmr:
                results = mmr_rerank(vector, live, options.top_k, options.mmr_lambda)
            else:
                results = live[: options.top_k]
            span.set_attribute("vocalis.retrieval.results", len(results))
            return results
        finally:
            RETRIEVAL_LATENCY.labels(caller=caller).observe(time.perf_counter() - started)


async def _live_chunks(
    database: Database, org_id: str, chunks: Sequence[ScoredChunk]
) -> list[ScoredChunk]:
    """Chunks of existing documents, one version per document, order kept.

    The version kept is the document's indexed one when the candidates hold it, else the
    newest among them: the vector store and the database are read one after the other,
    and a swap may happen in between, so either side may be a moment ahead.
    """
    if not chunks:
        return []
    ids = sorted({c.document_id for c in chunks})
    async with database.session() as session:
        rows = await session.execute(
            select(KnowledgeDocument.id, KnowledgeDocument.indexed_version).where(
                KnowledgeDocument.org_id == org_id, KnowledgeDocument.id.in_(ids)
            )
        )
        indexed = {str(doc_id): version for doc_id, version in rows.all()}
    present: dict[str, set[int]] = {}
    for chunk in chunks:
        present.setdefault(chunk.document_id, set()).add(chunk.version)
    keep: dict[str, int] = {}
    for doc_id, versions in present.items():
        if doc_id not in indexed:
            continue  # deleted: its chunks are on their way out
        wanted = indexed[doc_id]
        keep[doc_id] = wanted if wanted in versions else max(versions)
    return [c for c in chunks if keep.get(c.document_id) == c.version]


def mmr_rerank(
    query_vector: Sequence[float], chunks: Sequence[ScoredChunk], top_k: int, lambda_: float
) -> list[ScoredChunk]:
    """Maximal marginal relevance: each pick trades relevance for novelty against the picks.

    Relevance is the chunk's cosine similarity to the query (absolute, unlike hybrid
    scores, which are min-max normalised per query); redundancy is its highest cosine
    similarity to a chunk already picked. Without vectors the rank order is kept.
    """
    if not chunks or any(c.vector is None for c in chunks):
        return list(chunks[:top_k])
    unit = _unit_rows(np.asarray([c.vector for c in chunks], dtype=np.float32))
    query = _unit_rows(np.asarray([query_vector], dtype=np.float32))[0]
    relevance = unit @ query
    similarity = unit @ unit.T
    picked: list[int] = []
    remaining = list(range(len(chunks)))
    while remaining and len(picked) < top_k:
        if picked:
            redundancy = similarity[np.ix_(remaining, picked)].max(axis=1)
        else:
            redundancy = np.zeros(len(remaining), dtype=np.float32)
        gains = lambda_ * relevance[remaining] - (1.0 - lambda_) * redundancy
        best = remaining[int(np.argmax(gains))]
        picked.append(best)
        remaining.remove(best)
    return [chunks[i] for i in picked]


def _unit_rows(matrix: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.clip(norms, 1e-12, None)


def passage(chunk: ScoredChunk) -> Passage:
    """A search hit as the agent's `Passage`."""
    return Passage(
        text=chunk.text,
        document_id=chunk.document_id,
        document_name=chunk.document_name,
        chunk_id=chunk.id,
        score=chunk.score,
        page=chunk.metadata.page,
        section=chunk.metadata.section,
    )


class KnowledgeRetriever:
    """The `Retriever` agents use: hybrid search with the configured defaults."""

    def __init__(
        self, *, settings: Settings, database: Database, knowledge: Lazy[KnowledgeEngines]
    ) -> None:
        self._settings = settings
        self._database = database
        self._knowledge = knowledge

    async def retrieve(
        self, org_id: str, kb_ids: Sequence[str], query: str, top_k: int = 5
    ) -> list[Passage]:
        """Up to `top_k` passages from the organisation's `kb_ids`, best first."""
        hits = await _search(
            self._database,
            self._knowledge,
            org_id=org_id,
            kb_ids=kb_ids,
            query=query,
            options=default_options(self._settings, top_k),
            caller="agent",
        )
        return [passage(hit) for hit in hits]

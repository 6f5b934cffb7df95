"""Vector-store port: org-scoped chunk vectors with hybrid (vector + keyword) search.

Every call takes the caller's `org_id`; an adapter confines the call to that organisation
(a tenant in Weaviate, a strictly applied filter in LanceDB), so no call can read, count
or delete another organisation's chunks. `CHUNK_FIELDS` is the one declaration of what a
stored chunk holds; adapters build their schemas from it and the docs table is generated
from it.

Scores are in [0, 1], higher is better. `alpha` weighs vector similarity against the
keyword (BM25) score, 1 being pure vector and 0 pure keyword search, with Weaviate's
relative-score fusion: each signal is min-max normalised over the candidates, then mixed.
So hybrid scores rank well but are relative to one query's candidates; with `alpha=1`
the score is the absolute cosine similarity, the one to use for a relevance cut-off.
`score_threshold` drops results below it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

FilterValue = str | int | Sequence[str] | Sequence[int]


@dataclass(frozen=True)
class FieldSpec:
    """One stored property of a chunk."""

    name: str
    type: Literal["text", "int"]
    description: str
    filterable: bool = True
    keyword_searchable: bool = False
    nullable: bool = False


CHUNK_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("chunk_id", "text", "Caller's chunk id (unique per organisation)."),
    FieldSpec("kb_id", "text", "Knowledge base the chunk belongs to."),
    FieldSpec("document_id", "text", "Document the chunk was cut from."),
    FieldSpec("document_name", "text", "Document name shown in citations."),
    FieldSpec("version", "int", "Document version; re-uploads index a new version first."),
    FieldSpec(
        "text",
        "text",
        "The chunk's text (BM25-indexed).",
        filterable=False,
        keyword_searchable=True,
    ),
    FieldSpec("chunk_index", "int", "Position of the chunk within its document version."),
    FieldSpec("page", "int", "Page number (1-based) where the format has pages.", nullable=True),
    FieldSpec("section", "text", "Nearest heading above the chunk.", nullable=True),
)

# What one filter may hold: every backend stores the integers as 32-bit (or wider) values.
MAX_FILTER_VALUES = 100
MAX_FILTER_INT = 2**31 - 1
MAX_FILTER_TEXT = 1000


class InvalidQuery(ValueError):
    """A query outside what the port accepts; the message is fit for the client (it never
    holds a backend's own query text)."""


# Fields a query may filter on (besides the organisation and knowledge bases).
FILTERABLE_FIELDS: dict[str, type] = {
    "document_id": str,
    "document_name": str,
    "version": int,
    "chunk_index": int,
    "page": int,
    "section": str,
}

# Also Weaviate's tenant-name rule, so an org id is always a valid tenant name.
_ORG_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class ChunkMetadata:
    """Where a chunk sits in its document: what a citation shows."""

    chunk_index: int
    page: int | None = None
    section: str | None = None


@dataclass(frozen=True)
class ChunkRecord:
    """A chunk with its vector, ready to be indexed."""

    id: str
    kb_id: str
    document_id: str
    document_name: str
    version: int
    text: str
    vector: Sequence[float]
    metadata: ChunkMetadata


@dataclass(frozen=True)
class QueryRequest:
    """A hybrid search within one organisation."""

    vector: Sequence[float]
    text: str | None = None
    kb_ids: Sequence[str] | None = None  # None: every knowledge base of the organisation
    top_k: int = 5
    filters: Mapping[str, FilterValue] = field(default_factory=dict)
    alpha: float = 0.75  # Weaviate's default; recall@5 1.0 and @1 0.8 on the quality corpus
    score_threshold: float | None = None
    include_vectors: bool = False  # for MMR re-ranking by the caller


@dataclass(frozen=True)
class ScoredChunk:
    """A search hit."""

    id: str
    kb_id: str
    document_id: str
    document_name: str
    version: int
    text: str
    metadata: ChunkMetadata
    score: float
    vector: list[float] | None = None


class BatchUpsertError(Exception):
    """Some records of a batch were not indexed; the others were."""

    def __init__(self, failed: Mapping[str, str], succeeded: int) -> None:
        self.failed = dict(failed)
        self.succeeded = succeeded
        sample = "; ".join(f"{k}: {v}" for k, v in list(self.failed.items())[:5])
        super().__init__(f"{len(self.failed)} chunk(s) failed to index ({sample})")


class VectorStoreMismatch(RuntimeError):
    """The existing collection was created with another vector size."""


@runtime_checkable
class VectorStore(Protocol):
    """Chunk vectors of many organisations, isolated from each other."""

    name: str

    @property
    def dimensions(self) -> int:
        """The vector size of the collection."""
        ...

    async def ensure_collection(self) -> None:
        """Create the collection/table and its indexes if missing (idempotent)."""
        ...

    async def upsert(self, org_id: str, chunks: Sequence[ChunkRecord]) -> int:
        """Insert or replace chunks by id; returns how many were written.

        Invalid or rejected records do not stop the others: after writing the rest, it
        raises `BatchUpsertError` naming each failed id and why.
        """
        ...

    async def delete_document(
        self,
        org_id: str,
        document_id: str,
        version: int | None = None,
        *,
        keep_version: int | None = None,
    ) -> int:
        """Delete a document's chunks: one `version`, all but `keep_version`, or all."""
        ...

    async def delete_kb(self, org_id: str, kb_id: str) -> int:
        """Delete every chunk of a knowledge base; returns how many were deleted."""
        ...

    async def query(self, org_id: str, request: QueryRequest) -> list[ScoredChunk]:
        """The best `top_k` chunks by fused score, best first."""
        ...

    async def count(self, org_id: str, kb_id: str | None = None) -> int:
        """How many chunks an organisation (or one of its knowledge bases) holds."""
        ...

    async def ping(self) -> None:
        """Raise if the backend is unreachable."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def check_org_id(org_id: str) -> str:
    """Return `org_id` if it is a well-formed id, else raise ValueError (never filter on junk)."""
    if not isinstance(org_id, str) or not _ORG_ID.match(org_id):
        raise ValueError(f"invalid org id {org_id!r}")
    return org_id


def record_problem(record: ChunkRecord, dimensions: int) -> str | None:
    """Why a record cannot be indexed, or None when it is fine."""
    for name in ("id", "kb_id", "document_id"):
        value = getattr(record, name)
        if not isinstance(value, str) or not value:
            return f"{name} must be a non-empty string"
    if not record.text.strip():
        return "text is empty"
    if len(record.vector) != dimensions:
        return f"vector has {len(record.vector)} dimensions, expected {dimensions}"
    if not all(math.isfinite(x) for x in record.vector):
        return "vector holds NaN or infinity"
    if record.version < 0 or record.metadata.chunk_index < 0:
        return "version and chunk_index must not be negative"
    return None


def check_query(request: QueryRequest, dimensions: int) -> None:
    """Raise `InvalidQuery` (a ValueError) for a malformed query (unknown filter field,
    wrong types, bad ranges)."""
    if len(request.vector) != dimensions:
        raise InvalidQuery(
            f"query vector has {len(request.vector)} dimensions, expected {dimensions}"
        )
    if not 1 <= request.top_k <= 1000:
        raise InvalidQuery("top_k must be between 1 and 1000")
    if not 0.0 <= request.alpha <= 1.0:
        raise InvalidQuery("alpha must be between 0 and 1")
    if request.kb_ids is not None and isinstance(request.kb_ids, str):
        raise InvalidQuery("kb_ids must be a list of ids, not a string")
    for name, value in request.filters.items():
        expected = FILTERABLE_FIELDS.get(name)
        if expected is None:
            raise InvalidQuery(f"cannot filter on {name!r}; allowed: {sorted(FILTERABLE_FIELDS)}")
        values = filter_values(value)
        if not values or not all(type(v) is expected for v in values):
            raise InvalidQuery(f"filter {name!r} needs {expected.__name__} value(s)")
        if len(values) > MAX_FILTER_VALUES:
            raise InvalidQuery(f"filter {name!r} takes at most {MAX_FILTER_VALUES} values")
        for v in values:
            if isinstance(v, int) and not 0 <= v <= MAX_FILTER_INT:
                raise InvalidQuery(f"filter {name!r} takes integers from 0 to {MAX_FILTER_INT}")
            if isinstance(v, str) and (len(v) > MAX_FILTER_TEXT or "\x00" in v):
                raise InvalidQuery(
                    f"filter {name!r} takes text of at most {MAX_FILTER_TEXT} characters, "
                    "without NUL"
                )


def filter_values(value: FilterValue) -> list[str | int]:
    """A filter value as a list (a scalar means equality, a list means any of)."""
    if isinstance(value, str | int):
        return [value]
    return list(value)


def clamp_score(score: float) -> float:
    """Keep scores in [0, 1] whatever rounding the backend did."""
    return min(1.0, max(0.0, score))

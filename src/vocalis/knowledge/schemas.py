"""API shapes of knowledge bases, documents and queries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
FilterValue = str | int | list[str] | list[int]


class KnowledgeBaseCreate(BaseModel):
    """A new knowledge base."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    description: str = Field(default="", max_length=2000)


class KnowledgeBaseUpdate(BaseModel):
    """Fields to change; those left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: str | None = Field(default=None, max_length=2000)


class KnowledgeBaseOut(BaseModel):
    """A knowledge base."""

    object: Literal["knowledge_base"] = "knowledge_base"
    id: str
    name: str
    description: str
    document_count: int = Field(description="Documents in the knowledge base, any status.")
    created_at: datetime
    updated_at: datetime


class DocumentError(BaseModel):
    """Why the latest version of a document failed."""

    code: str = Field(description="A code from the error-code table, e.g. `document_corrupt`.")
    message: str


class DocumentOut(BaseModel):
    """A document and the ingestion state of its latest version."""

    object: Literal["document"] = "document"
    id: str
    knowledge_base_id: str
    name: str
    status: Literal["queued", "processing", "ready", "failed"]
    version: int = Field(description="The latest uploaded version (the one `status` is about).")
    indexed_version: int | None = Field(
        description="The version queries see; during a re-upload, the previous one."
    )
    type: str = Field(description="Detected from the content: pdf, docx, html, markdown, text.")
    content_type: str
    size_bytes: int
    checksum: str = Field(description="`sha256:<hex>` of the latest version's bytes.")
    page_count: int | None
    chunk_count: int = Field(description="Chunks of the indexed version.")
    error: DocumentError | None = None
    created_at: datetime
    updated_at: datetime
    indexed_at: datetime | None


class UploadOut(DocumentOut):
    """The answer to an upload: the queued document, or the existing identical one."""

    deduplicated: bool = Field(
        default=False,
        description="True when the same bytes were already in the knowledge base: the "
        "existing document is returned (HTTP 200) and nothing is ingested again.",
    )


class QueryIn(BaseModel):
    """A retrieval query against one knowledge base."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000)
    top_k: int | None = Field(default=None, ge=1, le=50, description="Default: settings.")
    filters: dict[str, FilterValue] = Field(
        default_factory=dict,
        description="Metadata filters: `document_id`, `document_name`, `section` (strings), "
        "`page`, `version`, `chunk_index` (integers); a list means any of.",
    )
    score_threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Drop results scoring below it. Hybrid scores are relative to the "
        "candidates; with `alpha` 1 the score is the cosine similarity.",
    )
    alpha: float | None = Field(
        default=None, ge=0.0, le=1.0, description="1 = vector only, 0 = keyword only."
    )
    mmr: bool = Field(
        default=False, description="Re-rank for diversity (maximal marginal relevance)."
    )
    mmr_lambda: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Relevance weight of MMR (1 = relevance only)."
    )


class QueryResult(BaseModel):
    """One retrieved chunk with what a citation needs."""

    chunk_id: str
    text: str
    score: float
    document_id: str
    document_name: str
    knowledge_base_id: str
    version: int
    page: int | None
    section: str | None


class QueryOut(BaseModel):
    """Retrieved chunks, best first."""

    object: Literal["list"] = "list"
    query: str
    results: list[QueryResult]

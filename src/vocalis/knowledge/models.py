"""Knowledge bases and their documents.

A document row is the *logical* document: one per name in a knowledge base. Uploading a
file under a name that exists makes a new version of that document; `version` is the
latest uploaded version (whose ingestion `status` describes) and `indexed_version` the
one whose chunks queries see. The previous version stays queryable until the new one is
indexed, then its chunks and objects are deleted. `checksum`, `size_bytes` and the type
describe the latest version; a second upload of identical bytes to the same knowledge
base returns the existing document instead of ingesting it again.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vocalis.core.db import Base, Timestamps
from vocalis.core.ids import new_id


class DocumentStatus(StrEnum):
    """Where a document version is in ingestion."""

    QUEUED = "queued"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class KnowledgeBase(Timestamps, Base):
    """A named collection of documents an agent can retrieve from."""

    __tablename__ = "knowledge_bases"
    __table_args__ = (Index("ix_knowledge_bases_org_id_id", "org_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("kb"))
    # Indexed by (org_id, id) above: org-scoped lookups and listing in id order.
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")


class KnowledgeDocument(Timestamps, Base):
    """One document of a knowledge base and the ingestion state of its latest version."""

    __tablename__ = "kb_documents"
    __table_args__ = (
        # One logical document per name: uploading the name again makes a new version.
        UniqueConstraint("kb_id", "name"),
        # Listing a knowledge base's documents in id order, always within one organisation.
        Index("ix_kb_documents_org_id_kb_id_id", "org_id", "kb_id", "id"),
        # De-duplication by content within a knowledge base.
        Index("ix_kb_documents_kb_id_checksum", "kb_id", "checksum"),
        # The stuck-document sweeper: documents queued or processing for too long.
        Index("ix_kb_documents_status_updated_at", "status", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("doc"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    kb_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), default=DocumentStatus.QUEUED.value)
    version: Mapped[int] = mapped_column(default=1)
    indexed_version: Mapped[int | None] = mapped_column(default=None)
    checksum: Mapped[str] = mapped_column(
        String(64), comment="SHA-256 (hex) of the latest version."
    )
    doc_type: Mapped[str] = mapped_column(String(20), comment="Sniffed: pdf, docx, html, …")
    content_type: Mapped[str] = mapped_column(String(120), comment="Media type of doc_type.")
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    object_key: Mapped[str] = mapped_column(String(1024), comment="The latest version's original.")
    page_count: Mapped[int | None] = mapped_column(default=None)
    chunk_count: Mapped[int] = mapped_column(default=0, comment="Chunks of indexed_version.")
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    ingest_attempts: Mapped[int] = mapped_column(
        default=0, comment="Ingestion starts of the latest version (gives up on a poison file)."
    )
    processing_started_at: Mapped[datetime | None] = mapped_column(default=None)
    indexed_at: Mapped[datetime | None] = mapped_column(default=None)

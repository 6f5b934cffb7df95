"""Knowledge bases and documents: CRUD, upload, and removing everything a document left.

Upload, in an order that leaves no orphan: the bytes are checked first (size while they
stream in, then type and checksum) and nothing is stored for a rejected file; then the
original goes to the object store, then the row is committed, then the ingest task is
published. If the row cannot be written, the object is deleted; if the task cannot be
published (broker down), the row change is undone, the object deleted and the client gets
503 `backend_unavailable`.

Identical bytes: an upload whose SHA-256 equals that of a document the knowledge base
already holds (in any status but `failed`) returns that document with HTTP 200 and
`deduplicated: true`, whatever its name; nothing is stored or ingested again. Uploads are
therefore safe to retry. Same name, different bytes: a new version of that document.

Deletion: the rows go first (so nothing new can refer to them), then the vectors and the
objects. If that clean-up fails (a backend is down), a `vocalis.knowledge.purge_*` task
finishes it with retries; an ingestion still running notices the row is gone and removes
what it wrote.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vocalis.core import object_keys
from vocalis.core.backends import Backends
from vocalis.core.db import utcnow
from vocalis.core.errors import (
    BackendUnavailable,
    Conflict,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    register,
)
from vocalis.core.ids import new_id
from vocalis.core.metrics import DOCUMENTS
from vocalis.knowledge.models import DocumentStatus, KnowledgeBase, KnowledgeDocument
from vocalis.knowledge.schemas import (
    DocumentError,
    DocumentOut,
    KnowledgeBaseOut,
    KnowledgeBaseUpdate,
    UploadOut,
)
from vocalis.knowledge.sniff import SniffResult, sniff
from vocalis.settings import Settings
from vocalis.workers.publish import enqueue

log = structlog.get_logger(__name__)

INGEST_TASK = "vocalis.knowledge.ingest_document"
PURGE_DOCUMENT_TASK = "vocalis.knowledge.purge_document"
PURGE_KNOWLEDGE_BASE_TASK = "vocalis.knowledge.purge_knowledge_base"
COMPACT_TASK = "vocalis.knowledge.compact_vector_store"

DOCUMENT_FILE_TOO_LARGE = register(
    "document_file_too_large",
    413,
    "Document file too large",
    "The uploaded file exceeds the per-document limit (`VOCALIS_KNOWLEDGE_MAX_DOCUMENT_BYTES`, "
    "capped by `VOCALIS_MAX_UPLOAD_BYTES`); detected while the upload streams in, and "
    "nothing is stored.",
)
DOCUMENT_TYPE_NOT_ALLOWED = register(
    "document_type_not_allowed",
    415,
    "Document type not allowed",
    "The document's type (detected from its content) is not in "
    "`VOCALIS_KNOWLEDGE_ALLOWED_TYPES` for this deployment.",
)
DOCUMENT_INGESTION_FAILED = register(
    "document_ingestion_failed",
    503,
    "Document ingestion failed",
    "Shown on a `failed` document: ingestion kept failing for a reason outside the document "
    "(embedding model or vector store unavailable) until its retries ran out. The task is in "
    "the dead-letter store; replay it, or upload the file again.",
    retryable=True,
)


class DocumentFileTooLarge(PayloadTooLarge):
    code = DOCUMENT_FILE_TOO_LARGE


class DocumentTypeNotAllowed(UnsupportedMediaType):
    code = DOCUMENT_TYPE_NOT_ALLOWED


# --- settings-derived limits ------------------------------------------------------------
def document_limit(settings: Settings) -> int:
    """Largest document accepted, in bytes."""
    return min(settings.knowledge_max_document_bytes, settings.max_upload_bytes)


def allowed_types(settings: Settings) -> frozenset[str]:
    """Document types this deployment accepts."""
    return frozenset(
        t.strip().lower() for t in settings.knowledge_allowed_types.split(",") if t.strip()
    )


# --- views -------------------------------------------------------------------------------
def kb_out(kb: KnowledgeBase, document_count: int) -> KnowledgeBaseOut:
    """The API shape of a knowledge base."""
    return KnowledgeBaseOut(
        id=kb.id,
        name=kb.name,
        description=kb.description,
        document_count=document_count,
        created_at=kb.created_at,
        updated_at=kb.updated_at,
    )


def document_out(doc: KnowledgeDocument) -> DocumentOut:
    """The API shape of a document."""
    error = None
    if doc.error_code:
        error = DocumentError(code=doc.error_code, message=doc.error_message or "")
    return DocumentOut(
        id=doc.id,
        knowledge_base_id=doc.kb_id,
        name=doc.name,
        status=doc.status,
        version=doc.version,
        indexed_version=doc.indexed_version,
        type=doc.doc_type,
        content_type=doc.content_type,
        size_bytes=doc.size_bytes,
        checksum=f"sha256:{doc.checksum}",
        page_count=doc.page_count,
        chunk_count=doc.chunk_count,
        error=error,
        created_at=doc.created_at,
        updated_at=doc.updated_at,
        indexed_at=doc.indexed_at,
    )


# --- knowledge bases ---------------------------------------------------------------------
async def create_knowledge_base(
    *, session: AsyncSession, org_id: str, name: str, description: str = ""
) -> KnowledgeBase:
    """Create an empty knowledge base."""
    kb = KnowledgeBase(org_id=org_id, name=name, description=description)
    session.add(kb)
    await session.flush()
    return kb


async def get_knowledge_base(*, session: AsyncSession, org_id: str, kb_id: str) -> KnowledgeBase:
    """The organisation's knowledge base; `NotFound` for a missing or another org's one."""
    kb = await session.scalar(
        select(KnowledgeBase).where(KnowledgeBase.org_id == org_id, KnowledgeBase.id == kb_id)
    )
    if kb is None:
        raise NotFound(f"No knowledge base {kb_id!r}.")
    return kb


async def list_knowledge_bases(
    *, session: AsyncSession, org_id: str, limit: int, after: str | None = None
) -> list[KnowledgeBase]:
    """The organisation's knowledge bases, newest first, after a cursor id."""
    query = select(KnowledgeBase).where(KnowledgeBase.org_id == org_id)
    if after:
        query = query.where(KnowledgeBase.id < after)
    return list(await session.scalars(query.order_by(KnowledgeBase.id.desc()).limit(limit)))


async def document_counts(
    *, session: AsyncSession, org_id: str, kb_ids: Sequence[str]
) -> dict[str, int]:
    """Documents per knowledge base, for a page of knowledge bases (one query)."""
    if not kb_ids:
        return {}
    rows = await session.execute(
        select(KnowledgeDocument.kb_id, func.count())
        .where(KnowledgeDocument.org_id == org_id, KnowledgeDocument.kb_id.in_(list(kb_ids)))
        .group_by(KnowledgeDocument.kb_id)
    )
    return {str(kb_id): int(count) for kb_id, count in rows.all()}


async def update_knowledge_base(
    *, session: AsyncSession, org_id: str, kb_id: str, changes: KnowledgeBaseUpdate
) -> KnowledgeBase:
    """Rename or re-describe a knowledge base."""
    kb = await get_knowledge_base(session=session, org_id=org_id, kb_id=kb_id)
    if changes.name is not None:
        kb.name = changes.name
    if changes.description is not None:
        kb.description = changes.description
    kb.updated_at = utcnow()
    await session.flush()
    return kb


async def delete_knowledge_base(backends: Backends, *, org_id: str, kb_id: str) -> None:
    """Delete a knowledge base with its documents, chunks, vectors and objects."""
    async with backends.database.session() as session:
        kb = await get_knowledge_base(session=session, org_id=org_id, kb_id=kb_id)
        await session.execute(
            delete(KnowledgeDocument).where(
                KnowledgeDocument.org_id == org_id, KnowledgeDocument.kb_id == kb_id
            )
        )
        await session.delete(kb)
    await _purge_or_defer(
        backends,
        lambda: purge_knowledge_base_data(backends, org_id=org_id, kb_id=kb_id),
        PURGE_KNOWLEDGE_BASE_TASK,
        {"org_id": org_id, "kb_id": kb_id},
    )


# --- documents ---------------------------------------------------------------------------
async def get_document(
    *, session: AsyncSession, org_id: str, kb_id: str, document_id: str
) -> KnowledgeDocument:
    """The organisation's document in `kb_id`; `NotFound` otherwise."""
    doc = await session.scalar(
        select(KnowledgeDocument).where(
            KnowledgeDocument.org_id == org_id,
            KnowledgeDocument.kb_id == kb_id,
            KnowledgeDocument.id == document_id,
        )
    )
    if doc is None:
        raise NotFound(f"No document {document_id!r} in knowledge base {kb_id!r}.")
    return doc


async def list_documents(
    *,
    session: AsyncSession,
    org_id: str,
    kb_id: str,
    limit: int,
    after: str | None = None,
    status: DocumentStatus | None = None,
) -> list[KnowledgeDocument]:
    """A knowledge base's documents, newest first, after a cursor id."""
    await get_knowledge_base(session=session, org_id=org_id, kb_id=kb_id)
    query = select(KnowledgeDocument).where(
        KnowledgeDocument.org_id == org_id, KnowledgeDocument.kb_id == kb_id
    )
    if after:
        query = query.where(KnowledgeDocument.id < after)
    if status is not None:
        query = query.where(KnowledgeDocument.status == status.value)
    return list(await session.scalars(query.order_by(KnowledgeDocument.id.desc()).limit(limit)))


async def delete_document(backends: Backends, *, org_id: str, kb_id: str, document_id: str) -> None:
    """Delete a document: its row, every version's chunks, vectors and objects."""
    async with backends.database.session() as session:
        doc = await get_document(
            session=session, org_id=org_id, kb_id=kb_id, document_id=document_id
        )
        await session.delete(doc)
    await _purge_or_defer(
        backends,
        lambda: purge_document_data(backends, org_id=org_id, kb_id=kb_id, document_id=document_id),
        PURGE_DOCUMENT_TASK,
        {"org_id": org_id, "kb_id": kb_id, "document_id": document_id},
    )


# --- upload ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Upload:
    """A received file: its client-side name, bytes and their SHA-256 (hex)."""

    filename: str
    data: bytes
    sha256: str

    @classmethod
    def of(cls, filename: str, data: bytes) -> Upload:
        """An upload of `data` (computes the checksum)."""
        return cls(filename, data, hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class UploadResult:
    """The document an upload created or updated, or the identical one already there."""

    document: KnowledgeDocument
    deduplicated: bool

    def out(self) -> UploadOut:
        """The API shape."""
        return UploadOut(**document_out(self.document).model_dump(), deduplicated=self.deduplicated)


def check_upload(settings: Settings, filename: str | None, data: bytes) -> SniffResult:
    """Detect the type from the bytes; reject empty, unsupported, disguised or unsafe files."""
    if len(data) > document_limit(settings):
        raise DocumentFileTooLarge(too_large_message(settings))
    sniffed = sniff(data, filename)
    if sniffed.type.value not in allowed_types(settings):
        raise DocumentTypeNotAllowed(
            f"{sniffed.type.value} documents are not accepted here; allowed: "
            f"{', '.join(sorted(allowed_types(settings)))}."
        )
    return sniffed


def too_large_message(settings: Settings) -> str:
    """The message of a `DocumentFileTooLarge`."""
    return f"The file exceeds the limit of {document_limit(settings)} bytes per document."


_VERSION_FIELDS = (
    "status",
    "version",
    "checksum",
    "doc_type",
    "content_type",
    "size_bytes",
    "object_key",
    "error_code",
    "error_message",
    "ingest_attempts",
    "processing_started_at",
    "updated_at",
)


async def upload_document(
    backends: Backends, *, org_id: str, kb_id: str, upload: Upload, name: str | None = None
) -> UploadResult:
    """Store a new document (or a new version of the one with this name) and queue it."""
    settings = backends.settings
    sniffed = await asyncio.to_thread(check_upload, settings, upload.filename, upload.data)
    doc_name = object_keys.safe_filename(name or upload.filename or "document")
    async with backends.database.session() as session:
        await get_knowledge_base(session=session, org_id=org_id, kb_id=kb_id)
        duplicate = await _find_duplicate(session, org_id, kb_id, upload.sha256)
        if duplicate is not None:
            return UploadResult(duplicate, deduplicated=True)
        existing = await _find_by_name(session, org_id, kb_id, doc_name)
        previous = {f: getattr(existing, f) for f in _VERSION_FIELDS} if existing else None
    document_id = existing.id if existing else new_id("doc")
    version = existing.version + 1 if existing else 1
    key = object_keys.document_original(org_id, kb_id, document_id, version, doc_name)
    await backends.objects.put(key, upload.data, content_type=sniffed.media_type)
    fields: dict[str, Any] = {
        "status": DocumentStatus.QUEUED.value,
        "version": version,
        "checksum": upload.sha256,
        "doc_type": sniffed.type.value,
        "content_type": sniffed.media_type,
        "size_bytes": len(upload.data),
        "object_key": key,
        "error_code": None,
        "error_message": None,
        "ingest_attempts": 0,
        "processing_started_at": None,
        "updated_at": utcnow(),
    }
    try:
        doc = await _write_version(backends, org_id, kb_id, document_id, doc_name, fields, previous)
    except BaseException:
        await _delete_quietly(backends, key)
        raise
    task_id = await enqueue(
        settings,
        INGEST_TASK,
        kwargs={"org_id": org_id, "kb_id": kb_id, "document_id": document_id, "version": version},
    )
    if task_id is None:
        await _undo_version(backends, document_id, version, previous)
        await _delete_quietly(backends, key)
        raise BackendUnavailable(
            "The ingestion queue is unreachable, so the upload was not kept; retry later."
        )
    DOCUMENTS.labels(status=DocumentStatus.QUEUED.value).inc()
    log.info(
        "document_queued", document_id=document_id, kb_id=kb_id, version=version, type=sniffed.type
    )
    return UploadResult(doc, deduplicated=False)


async def _find_duplicate(
    session: AsyncSession, org_id: str, kb_id: str, sha256: str
) -> KnowledgeDocument | None:
    # A failed document is not a duplicate: uploading it again is how a user retries.
    return await session.scalar(
        select(KnowledgeDocument)
        .where(
            KnowledgeDocument.org_id == org_id,
            KnowledgeDocument.kb_id == kb_id,
            KnowledgeDocument.checksum == sha256,
            KnowledgeDocument.status != DocumentStatus.FAILED.value,
        )
        .limit(1)
    )


async def _find_by_name(
    session: AsyncSession, org_id: str, kb_id: str, name: str
) -> KnowledgeDocument | None:
    return await session.scalar(
        select(KnowledgeDocument).where(
            KnowledgeDocument.org_id == org_id,
            KnowledgeDocument.kb_id == kb_id,
            KnowledgeDocument.name == name,
        )
    )


async def _write_version(
    backends: Backends,
    org_id: str,
    kb_id: str,
    document_id: str,
    name: str,
    fields: dict[str, Any],
    previous: dict[str, Any] | None,
) -> KnowledgeDocument:
    """Insert the document, or move it to the new version if nobody else did meanwhile."""
    try:
        async with backends.database.session() as session:
            if previous is None:
                doc = KnowledgeDocument(
                    id=document_id, org_id=org_id, kb_id=kb_id, name=name, **fields
                )
                session.add(doc)
                await session.flush()
                return doc
            result = await session.execute(
                update(KnowledgeDocument)
                .where(
                    KnowledgeDocument.id == document_id,
                    KnowledgeDocument.org_id == org_id,
                    KnowledgeDocument.version == previous["version"],
                )
                .values(**fields)
            )
            if _rowcount(result) != 1:
                raise Conflict(f"Another upload of {name!r} is in progress; retry.")
            moved = await session.get(KnowledgeDocument, document_id, populate_existing=True)
            assert moved is not None
            return moved
    except IntegrityError as exc:
        # Same name uploaded concurrently, or the knowledge base deleted meanwhile.
        raise Conflict(f"{name!r} was uploaded or removed concurrently; retry.") from exc


async def _undo_version(
    backends: Backends, document_id: str, version: int, previous: dict[str, Any] | None
) -> None:
    """Take back a version whose ingest task could not be published."""
    try:
        async with backends.database.session() as session:
            where = (KnowledgeDocument.id == document_id, KnowledgeDocument.version == version)
            if previous is None:
                await session.execute(delete(KnowledgeDocument).where(*where))
            else:
                await session.execute(update(KnowledgeDocument).where(*where).values(**previous))
    except Exception:
        log.exception("upload_undo_failed", document_id=document_id, version=version)


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def _delete_quietly(backends: Backends, key: str) -> None:
    try:
        await backends.objects.delete(key)
    except Exception:
        log.exception("object_cleanup_failed", key=key)


# --- removing what documents leave behind ------------------------------------------------
async def purge_document_data(
    backends: Backends, *, org_id: str, kb_id: str, document_id: str
) -> None:
    """Delete every version's vectors and objects of a document (idempotent)."""
    store = (await backends.knowledge.get()).vector_store
    await store.delete_document(org_id, document_id)
    await backends.objects.delete_prefix(object_keys.document_prefix(org_id, kb_id, document_id))


async def purge_version_data(
    backends: Backends, *, org_id: str, kb_id: str, document_id: str, name: str, version: int
) -> None:
    """Delete one version's vectors and objects (a failed, superseded or orphaned version)."""
    store = (await backends.knowledge.get()).vector_store
    await store.delete_document(org_id, document_id, version)
    for key in version_keys(org_id, kb_id, document_id, name, version):
        await backends.objects.delete(key)


async def purge_other_versions(
    backends: Backends, *, org_id: str, kb_id: str, document_id: str, name: str, keep: int
) -> None:
    """Delete every version's vectors and objects except those of `keep` (after a swap)."""
    store = (await backends.knowledge.get()).vector_store
    await store.delete_document(org_id, document_id, keep_version=keep)
    kept = set(version_keys(org_id, kb_id, document_id, name, keep))
    prefix = object_keys.document_prefix(org_id, kb_id, document_id)
    stale = [info.key async for info in backends.objects.list(prefix) if info.key not in kept]
    for key in stale:
        await backends.objects.delete(key)


async def purge_knowledge_base_data(backends: Backends, *, org_id: str, kb_id: str) -> None:
    """Delete every vector and object of a knowledge base (idempotent)."""
    store = (await backends.knowledge.get()).vector_store
    await store.delete_kb(org_id, kb_id)
    await backends.objects.delete_prefix(object_keys.knowledge_base_prefix(org_id, kb_id))


def version_keys(org_id: str, kb_id: str, document_id: str, name: str, version: int) -> list[str]:
    """The object keys one document version may have: its original and its text."""
    return [
        object_keys.document_original(org_id, kb_id, document_id, version, name),
        object_keys.document_text(org_id, kb_id, document_id, version),
    ]


async def _purge_or_defer(
    backends: Backends,
    purge: Callable[[], Awaitable[None]],
    task: str,
    kwargs: dict[str, Any],
) -> None:
    """Clean up now; if a backend is down, leave it to the purge task (with retries)."""
    try:
        await purge()
    except Exception as exc:
        log.warning("knowledge_purge_deferred", task=task, error=f"{type(exc).__name__}: {exc}")
        if await enqueue(backends.settings, task, kwargs=kwargs) is None:
            log.error("knowledge_purge_not_queued", task=task, **kwargs)


async def compact_vector_store(backends: Backends, *, keep_deleted_for: timedelta) -> bool:
    """Purge deleted chunks from disk and fold new rows into the indexes (LanceDB).

    LanceDB deletes are logical: deleted rows stay in older table versions until those are
    cleaned up. Weaviate deletes for real and has nothing to compact (returns False).
    """
    store = (await backends.knowledge.get()).vector_store
    optimize = getattr(store, "optimize", None)
    if optimize is None:
        return False
    await optimize(cleanup_older_than=keep_deleted_for)
    return True

"""Ingestion of one document version: extract → normalise → chunk → embed → index.

`ingest_document` is what the `vocalis.knowledge.ingest_document` task runs. It is safe to
run twice (at-least-once delivery): chunk ids are derived from document, version and
position, so a second run overwrites the same chunks, and the `document.ready` event has
an idempotency key. Every state change is conditional on the row still holding *this*
version, so a run that was overtaken by a newer upload, or whose document was deleted
meanwhile, notices it and removes only what it wrote itself.

Failures:
- the document itself is unusable (empty, corrupt, disguised, zip bomb, too many pages):
  `DocumentRejected`, permanent — the version is marked `failed` with the error's code at
  once, its objects and vectors are removed, `document.failed` is recorded; no retry and
  no dead letter (nothing an operator could fix).
- a backend is down (embedding endpoint, vector store, object store, database): the error
  is raised as transient and the task retries with backoff; on the last attempt the
  version is marked `failed` with `document_ingestion_failed`, `document.failed` is
  recorded and the task is dead-lettered (replaying it ingests the version again).

Each stage runs in a span `ingest.<stage>` and is timed in
`vocalis_ingest_stage_duration_seconds`; embedding batches are `rag.embed` spans.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy import select, update

from vocalis.core import object_keys
from vocalis.core.backends import Backends
from vocalis.core.db import utcnow
from vocalis.core.metrics import (
    DOCUMENTS,
    INGEST_CHUNKS,
    INGEST_CHUNKS_PER_SECOND,
    INGEST_STAGE_DURATION,
)
from vocalis.core.tracing import SPAN_NAMES, tracer
from vocalis.events.outbox import record_event
from vocalis.events.registry import DocumentFailed, DocumentReady
from vocalis.knowledge import service
from vocalis.knowledge.chunking import Chunk, ChunkingOptions, chunk_sections
from vocalis.knowledge.embedding import embed
from vocalis.knowledge.errors import DocumentRejected, EmptyDocument
from vocalis.knowledge.extract import (
    ExtractedDocument,
    ExtractionLimits,
    Section,
    extract,
    normalise_text,
)
from vocalis.knowledge.models import DocumentStatus, KnowledgeDocument
from vocalis.knowledge.sniff import sniff
from vocalis.ports.embeddings import EmbeddingError
from vocalis.ports.knowledge import KnowledgeEngines
from vocalis.ports.object_store import ObjectNotFound
from vocalis.ports.vector_store import ChunkMetadata, ChunkRecord
from vocalis.settings import Settings
from vocalis.workers.retry import TransientError, is_transient

log = structlog.get_logger(__name__)

STAGES = ("download", "sniff", "extract", "normalise", "chunk", "embed", "index", "cleanup")
SPAN_NAMES.setdefault(
    "ingest.<stage>",
    "One stage of ingesting a document version: download, sniff, extract, normalise, "
    "chunk, index (one span per batch), cleanup.",
)

# Runs of one version that may end without a verdict (the worker died, or the sweeper
# re-queued it) before the file is given up on as one that crashes or stalls workers.
WORKER_CRASHES_TOLERATED = 3


class Outcome(StrEnum):
    """How one run of `ingest_document` ended."""

    READY = "ready"
    FAILED = "failed"
    SKIPPED = "skipped"  # deleted, superseded or already done


@dataclass(frozen=True)
class IngestOutcome:
    """What one run did."""

    outcome: Outcome
    chunk_count: int = 0
    reason: str = ""


@dataclass(frozen=True)
class VersionRef:
    """The document version a run is about, as read when it started."""

    org_id: str
    kb_id: str
    document_id: str
    version: int
    name: str
    object_key: str


class IngestionUnavailable(TransientError):
    """A backend needed for ingestion failed; the task retries."""


# --- the pipeline ------------------------------------------------------------------------
@dataclass(frozen=True)
class PipelineResult:
    """What the pipeline produced for one version."""

    chunk_count: int
    page_count: int | None


class StageClock:
    """Accumulates each stage's time for one document; spans are opened per stage run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, **attributes: Any) -> Iterator[None]:
        """Time and trace one run of stage `name`."""
        with tracer().start_as_current_span(f"ingest.{name}") as span:
            for key, value in attributes.items():
                span.set_attribute(f"vocalis.{key}", value)
            started = time.perf_counter()
            try:
                yield
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def observe(self) -> None:
        """Record the stage durations and the total in the histogram."""
        for name, seconds in self.seconds.items():
            INGEST_STAGE_DURATION.labels(stage=name).observe(seconds)
        INGEST_STAGE_DURATION.labels(stage="total").observe(sum(self.seconds.values()))


def normalise_sections(document: ExtractedDocument) -> list[Section]:
    """Sections with normalised text; empty ones dropped (extraction may leave blanks)."""
    sections = []
    for section in document.sections:
        text = normalise_text(section.text)
        if text:
            sections.append(
                Section(
                    text,
                    page=section.page,
                    heading=section.heading,
                    heading_path=section.heading_path,
                )
            )
    return sections


def chunk_id(document_id: str, version: int, index: int) -> str:
    """The stable id of one chunk of one document version."""
    return f"{document_id}-v{version}-{index:05d}"


def chunk_records(
    ref: VersionRef, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]
) -> list[ChunkRecord]:
    """Vector-store records for embedded chunks."""
    return [
        ChunkRecord(
            id=chunk_id(ref.document_id, ref.version, chunk.index),
            kb_id=ref.kb_id,
            document_id=ref.document_id,
            document_name=ref.name,
            version=ref.version,
            text=chunk.text,
            vector=vector,
            metadata=ChunkMetadata(chunk_index=chunk.index, page=chunk.page, section=chunk.heading),
        )
        for chunk, vector in zip(chunks, vectors, strict=True)
    ]


async def run_pipeline(
    backends: Backends, ref: VersionRef, built: KnowledgeEngines, clock: StageClock
) -> PipelineResult:
    """Turn the stored original of a version into indexed chunks; returns the counts."""
    settings = backends.settings
    with clock.stage("download"):
        data = await _backend_call("object store", backends.objects.get(ref.object_key))
    with clock.stage("sniff"):
        # Checked against the file name at upload; here only the content matters (the
        # document name may be a label without the file's extension).
        sniffed = await asyncio.to_thread(sniff, data, None)
    with clock.stage("extract", document_type=sniffed.type.value):
        limits = ExtractionLimits(
            max_pages=settings.knowledge_max_pages, max_chars=settings.knowledge_max_chars
        )
        document = await asyncio.to_thread(extract, data, sniffed.type, limits=limits)
    with clock.stage("normalise"):
        sections = normalise_sections(document)
        text = "\n\n".join(s.text for s in sections)
        if not text:
            raise EmptyDocument("No text could be extracted from the document.")
        text_key = object_keys.document_text(ref.org_id, ref.kb_id, ref.document_id, ref.version)
        await _backend_call(
            "object store",
            backends.objects.put(text_key, text.encode(), content_type="text/plain; charset=utf-8"),
        )
    with clock.stage("chunk"):
        options = ChunkingOptions(
            max_tokens=settings.knowledge_chunk_tokens,
            overlap_tokens=settings.knowledge_chunk_overlap_tokens,
        )
        chunks = await asyncio.to_thread(chunk_sections, sections, built.count_tokens, options)
    if not chunks:
        raise EmptyDocument("The document yielded no text to index.")
    await embed_and_index(ref, chunks, built, clock, settings.knowledge_embedding_batch_size)
    return PipelineResult(chunk_count=len(chunks), page_count=document.page_count)


async def embed_and_index(
    ref: VersionRef,
    chunks: Sequence[Chunk],
    built: KnowledgeEngines,
    clock: StageClock,
    batch_size: int,
) -> None:
    """Embed and index chunks batch by batch, so memory stays flat for long documents.

    Batch *n* is written to the vector store while batch *n+1* is embedded (the model runs
    on its own threads, the store's write is I/O and its own runtime), so indexing adds
    little to the time embedding takes. At most one write is in flight; a failed write
    fails the run after the current embedding, and a failed embedding cancels nothing
    that was not already sent.
    """
    started = time.perf_counter()
    writing: asyncio.Task[None] | None = None
    try:
        for start in range(0, len(chunks), batch_size):
            batch = chunks[start : start + batch_size]
            with clock.stage("embed", batch_start=start):
                try:
                    vectors = await embed(
                        built.embedder, [c.embedding_text() for c in batch], purpose="ingest"
                    )
                except EmbeddingError as exc:
                    raise IngestionUnavailable(f"embedding failed: {exc}") from exc
            if writing is not None:
                await writing
            writing = asyncio.create_task(_index_batch(ref, batch, vectors, built, clock, start))
        if writing is not None:
            await writing
    finally:
        if writing is not None and not writing.done():
            writing.cancel()
            await asyncio.gather(writing, return_exceptions=True)
    INGEST_CHUNKS.inc(len(chunks))
    elapsed = time.perf_counter() - started
    if elapsed > 0:
        INGEST_CHUNKS_PER_SECOND.observe(len(chunks) / elapsed)


async def _index_batch(
    ref: VersionRef,
    batch: Sequence[Chunk],
    vectors: list[list[float]],
    built: KnowledgeEngines,
    clock: StageClock,
    start: int,
) -> None:
    with clock.stage("index", batch_start=start):
        records = chunk_records(ref, batch, vectors)
        await _backend_call("vector store", built.vector_store.upsert(ref.org_id, records))


async def _backend_call(what: str, call: Any) -> Any:
    """Await a backend call; its failure is transient (the backend may come back)."""
    try:
        return await call
    except (DocumentRejected, ObjectNotFound):
        raise
    except Exception as exc:
        raise IngestionUnavailable(f"{what} failed: {type(exc).__name__}: {exc}") from exc


# --- the state machine around it ---------------------------------------------------------
async def ingest_document(
    backends: Backends,
    *,
    org_id: str,
    kb_id: str,
    document_id: str,
    version: int,
    final_attempt: bool,
) -> IngestOutcome:
    """Ingest one version of a document; see the module docstring for failure handling."""
    structlog.contextvars.bind_contextvars(document_id=document_id, document_version=version)
    ref, skip = await _start(backends, org_id, kb_id, document_id, version)
    if ref is None:
        return IngestOutcome(Outcome.SKIPPED, reason=skip)
    clock = StageClock()
    try:
        built = await backends.knowledge.get()
        result = await run_pipeline(backends, ref, built, clock)
    except DocumentRejected as exc:
        await _fail(backends, ref, exc.code, exc.detail, remove_files=True)
        return IngestOutcome(Outcome.FAILED, reason=exc.code)
    except ObjectNotFound:
        return await _original_missing(backends, ref)
    except Exception as exc:
        if final_attempt or not is_transient(exc):
            await _fail(
                backends,
                ref,
                service.DOCUMENT_INGESTION_FAILED,
                f"Ingestion failed: {type(exc).__name__}: {exc}",
                remove_files=False,  # kept so that replaying the dead letter can ingest it
            )
        raise
    finally:
        clock.observe()
    return await _finish(backends, ref, result)


async def _start(
    backends: Backends, org_id: str, kb_id: str, document_id: str, version: int
) -> tuple[VersionRef | None, str]:
    """Mark the version `processing`; (None, why) when there is nothing to do."""
    async with backends.database.session() as session:
        doc = await session.scalar(
            select(KnowledgeDocument).where(
                KnowledgeDocument.org_id == org_id, KnowledgeDocument.id == document_id
            )
        )
        if doc is None:
            verdict = "deleted"
        else:
            ref = VersionRef(org_id, doc.kb_id, doc.id, version, doc.name, doc.object_key)
            verdict = _verdict(doc, version)
            if not verdict:
                doc.status = DocumentStatus.PROCESSING.value
                doc.processing_started_at = utcnow()
                doc.ingest_attempts += 1
                doc.updated_at = utcnow()
                attempts = doc.ingest_attempts
    if verdict == "deleted":
        # Deleted while queued: remove anything an earlier, interrupted run left behind.
        await service.purge_document_data(
            backends, org_id=org_id, kb_id=kb_id, document_id=document_id
        )
        return None, verdict
    if verdict == "superseded":
        await _purge_version(backends, ref)
        return None, verdict
    if verdict == "already ready":
        # A redelivery after the version was indexed: only the old versions' clean-up may
        # still be outstanding.
        await _remove_old_versions(backends, ref)
        return None, verdict
    DOCUMENTS.labels(status=DocumentStatus.PROCESSING.value).inc()
    limit = max_ingest_starts(backends.settings)
    if attempts > limit:
        await _fail(
            backends,
            ref,
            service.DOCUMENT_INGESTION_FAILED,
            f"Ingestion was started {attempts - 1} times without finishing (the file may "
            "crash or stall the worker); giving up.",
            remove_files=True,
        )
        return None, "gave up"
    return ref, ""


def _verdict(doc: KnowledgeDocument, version: int) -> str:
    """Why a run for `version` has nothing to do, or "" when it should ingest."""
    if doc.version != version:
        return "superseded"
    if doc.status == DocumentStatus.READY and doc.indexed_version == version:
        return "already ready"
    return ""


def max_ingest_starts(settings: Settings) -> int:
    """Runs one version may start: the first, every retry, and a few worker crashes."""
    return settings.task_max_retries + 1 + WORKER_CRASHES_TOLERATED


async def _finish(backends: Backends, ref: VersionRef, result: PipelineResult) -> IngestOutcome:
    """Make the version the one queries see, then remove the versions it replaces."""
    async with backends.database.session() as session:
        updated = await session.execute(
            update(KnowledgeDocument)
            .where(*_this_version(ref))
            .values(
                status=DocumentStatus.READY.value,
                indexed_version=ref.version,
                chunk_count=result.chunk_count,
                page_count=result.page_count,
                error_code=None,
                error_message=None,
                indexed_at=utcnow(),
                updated_at=utcnow(),
            )
        )
        current = bool(getattr(updated, "rowcount", 0))
        if current:
            await record_event(
                session=session,
                org_id=ref.org_id,
                type="document.ready",
                data=DocumentReady(
                    knowledge_base_id=ref.kb_id,
                    document_id=ref.document_id,
                    name=ref.name,
                    version=ref.version,
                    chunk_count=result.chunk_count,
                ).model_dump(mode="json"),
                idempotency_key=f"{ref.document_id}:v{ref.version}:ready",
            )
    if not current:
        # Deleted or overtaken by a newer upload while we worked: take back what we wrote.
        await _purge_version(backends, ref)
        return IngestOutcome(Outcome.SKIPPED, reason="deleted or superseded during ingestion")
    DOCUMENTS.labels(status=DocumentStatus.READY.value).inc()
    await _remove_old_versions(backends, ref)
    log.info("document_ready", chunks=result.chunk_count, version=ref.version)
    return IngestOutcome(Outcome.READY, chunk_count=result.chunk_count)


async def _fail(
    backends: Backends, ref: VersionRef, code: str, message: str, *, remove_files: bool
) -> None:
    """Mark the version failed (if still current), record `document.failed`, tidy up."""
    async with backends.database.session() as session:
        updated = await session.execute(
            update(KnowledgeDocument)
            .where(*_this_version(ref))
            .values(
                status=DocumentStatus.FAILED.value,
                error_code=code,
                error_message=message[:2000],
                updated_at=utcnow(),
            )
        )
        current = bool(getattr(updated, "rowcount", 0))
        if current:
            await record_event(
                session=session,
                org_id=ref.org_id,
                type="document.failed",
                data=DocumentFailed(
                    knowledge_base_id=ref.kb_id,
                    document_id=ref.document_id,
                    name=ref.name,
                    error_code=code,
                    error=message[:2000],
                ).model_dump(mode="json"),
                idempotency_key=f"{ref.document_id}:v{ref.version}:failed",
            )
    if current:
        DOCUMENTS.labels(status=DocumentStatus.FAILED.value).inc()
        log.warning("document_failed", error_code=code, error=message[:500])
    if remove_files or not current:
        try:
            await _purge_version(backends, ref)
        except Exception:
            log.exception("failed_version_cleanup_failed")


async def _original_missing(backends: Backends, ref: VersionRef) -> IngestOutcome:
    """The original is gone: fine if the version was deleted or replaced, else a failure."""
    async with backends.database.session() as session:
        still = await session.scalar(select(KnowledgeDocument.id).where(*_this_version(ref)))
    if still is None:
        await _purge_version(backends, ref)
        return IngestOutcome(Outcome.SKIPPED, reason="deleted or superseded")
    await _fail(
        backends,
        ref,
        service.DOCUMENT_INGESTION_FAILED,
        "The uploaded file is missing from the object store.",
        remove_files=True,
    )
    return IngestOutcome(Outcome.FAILED, reason="original missing")


def _this_version(ref: VersionRef) -> tuple[Any, ...]:
    return (
        KnowledgeDocument.org_id == ref.org_id,
        KnowledgeDocument.id == ref.document_id,
        KnowledgeDocument.version == ref.version,
    )


async def _purge_version(backends: Backends, ref: VersionRef) -> None:
    await service.purge_version_data(
        backends,
        org_id=ref.org_id,
        kb_id=ref.kb_id,
        document_id=ref.document_id,
        name=ref.name,
        version=ref.version,
    )


async def _remove_old_versions(backends: Backends, ref: VersionRef) -> None:
    clock = StageClock()
    with clock.stage("cleanup"):
        try:
            await service.purge_other_versions(
                backends,
                org_id=ref.org_id,
                kb_id=ref.kb_id,
                document_id=ref.document_id,
                name=ref.name,
                keep=ref.version,
            )
        except Exception as exc:
            # The new version is live; retrying the task finishes the clean-up (the run
            # finds the version ready and only removes the old ones).
            raise IngestionUnavailable(f"removing old versions failed: {exc}") from exc
    INGEST_STAGE_DURATION.labels(stage="cleanup").observe(clock.seconds.get("cleanup", 0.0))


# --- stuck documents ---------------------------------------------------------------------
async def requeue_stuck_documents(backends: Backends, cutoff: datetime) -> int:
    """Publish the ingest task again for versions queued or processing since before `cutoff`."""
    from vocalis.workers.publish import enqueue

    async with backends.database.session() as session:
        stuck = list(
            await session.scalars(
                select(KnowledgeDocument)
                .where(
                    KnowledgeDocument.status.in_(
                        [DocumentStatus.QUEUED.value, DocumentStatus.PROCESSING.value]
                    ),
                    KnowledgeDocument.updated_at < cutoff,
                )
                .limit(500)
            )
        )
        for doc in stuck:
            doc.updated_at = utcnow()  # not picked again before another full interval
    requeued = 0
    for doc in stuck:
        sent = await enqueue(
            backends.settings,
            service.INGEST_TASK,
            kwargs={
                "org_id": doc.org_id,
                "kb_id": doc.kb_id,
                "document_id": doc.id,
                "version": doc.version,
            },
        )
        requeued += 1 if sent else 0
    if stuck:
        log.warning("stuck_documents_requeued", found=len(stuck), requeued=requeued)
    return requeued

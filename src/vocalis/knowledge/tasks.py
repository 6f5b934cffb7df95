"""Knowledge Celery tasks (`vocalis.knowledge.*`, routed to the `ingest` queue).

Importing this module (the worker autodiscovers it) also registers the stuck-document
sweeper with the maintenance job.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from vocalis.core.backends import Backends
from vocalis.knowledge import ingest, service
from vocalis.workers.base import TaskContext, default_policy, vocalis_task
from vocalis.workers.maintenance import register_stuck_document_sweeper
from vocalis.workers.retry import TransientError


@vocalis_task(
    service.INGEST_TASK,
    idempotency_note="safe to repeat: chunk ids derive from document, version and position; "
    "every state change is conditional on the version; `document.ready`/`document.failed` "
    "carry idempotency keys",
    retry_note="backend failures retry; a rejected document fails at once without retry",
)
async def ingest_document(
    ctx: TaskContext, *, org_id: str, kb_id: str, document_id: str, version: int
) -> dict[str, object]:
    """Extract, chunk, embed and index one document version."""
    final = not default_policy(ctx.settings).can_retry(ctx.retries)
    outcome = await ingest.ingest_document(
        ctx.backends,
        org_id=org_id,
        kb_id=kb_id,
        document_id=document_id,
        version=version,
        final_attempt=final,
    )
    return {"outcome": outcome.outcome.value, "chunks": outcome.chunk_count, "why": outcome.reason}


@vocalis_task(service.PURGE_DOCUMENT_TASK)
async def purge_document(ctx: TaskContext, *, org_id: str, kb_id: str, document_id: str) -> None:
    """Delete a deleted document's remaining vectors and objects."""
    try:
        await service.purge_document_data(
            ctx.backends, org_id=org_id, kb_id=kb_id, document_id=document_id
        )
    except Exception as exc:  # a clean-up is always worth retrying
        raise TransientError(f"purging document {document_id} failed: {exc}") from exc


@vocalis_task(service.PURGE_KNOWLEDGE_BASE_TASK)
async def purge_knowledge_base(ctx: TaskContext, *, org_id: str, kb_id: str) -> None:
    """Delete a deleted knowledge base's remaining vectors and objects."""
    try:
        await service.purge_knowledge_base_data(ctx.backends, org_id=org_id, kb_id=kb_id)
    except Exception as exc:  # a clean-up is always worth retrying
        raise TransientError(f"purging knowledge base {kb_id} failed: {exc}") from exc


# Older table versions (which still hold deleted chunks) are kept this long, so readers
# and writers in other processes never lose the version they are working on.
DELETED_CHUNKS_KEPT = timedelta(hours=1)


@vocalis_task(service.COMPACT_TASK)
async def compact_vector_store(ctx: TaskContext) -> bool:
    """Purge deleted chunks from the vector store's files and fold in new rows (periodic)."""
    return await service.compact_vector_store(ctx.backends, keep_deleted_for=DELETED_CHUNKS_KEPT)


@register_stuck_document_sweeper
async def requeue_stuck_documents(backends: Backends, cutoff: datetime) -> int:
    """Re-publish ingestion of documents queued or processing since before `cutoff`."""
    return await ingest.requeue_stuck_documents(backends, cutoff)

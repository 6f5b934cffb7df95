"""The ingest task's body, run in process: stages, failures, retries, versions, races.

The real worker path is covered end to end in test_end_to_end.py; here the state machine
is driven directly so each behaviour is one fast test. Faults are injected only at the
edges (the embedder and the vector store, wrapped around the real ones).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Coroutine, Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from tests.api.conftest import Api, Tenant
from tests.fixtures.documents import make_pdf
from tests.knowledge.harness import (
    create_kb,
    document,
    events_of,
    ingest_now,
    nothing_left,
    object_keys_of,
    results,
    upload,
    uploaded,
    vectors_of,
)
from vocalis.core import object_keys
from vocalis.core.db import utcnow
from vocalis.knowledge import ingest, service
from vocalis.knowledge.models import KnowledgeDocument
from vocalis.ports.embeddings import Embedder, EmbeddingError
from vocalis.ports.knowledge import KnowledgeEngines
from vocalis.ports.vector_store import ChunkRecord, VectorStore
from vocalis.wiring.knowledge import lancedb_path
from vocalis.workers.retry import is_transient

POLICY_V1 = b"# Refund policy\n\nRefunds are paid within 14 days of the return.\n"
POLICY_V2 = b"# Refund policy\n\nRefunds are paid within 30 days of the return.\n"


class WrappedEmbedder:
    """The real embedder, with a hook run before each call (fault injection at the edge)."""

    def __init__(self, inner: Embedder, before: Callable[[], Any]) -> None:
        self.inner = inner
        self.before = before
        self.model_id = inner.model_id
        self.dimensions = inner.dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        result = self.before()
        if hasattr(result, "__await__"):
            await result
        return await self.inner.embed(texts)

    async def ping(self) -> None:
        await self.inner.ping()


class WrappedStore:
    """The real vector store, with a hook run after each upsert."""

    def __init__(self, inner: VectorStore, after_upsert: Callable[[], Any]) -> None:
        self.inner = inner
        self.after_upsert = after_upsert

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def upsert(self, org_id: str, chunks: Sequence[ChunkRecord]) -> int:
        written = await self.inner.upsert(org_id, chunks)
        await self.after_upsert()
        return written


async def _engines_with(api: Api, **swaps: Any) -> KnowledgeEngines:
    """Build the real engines, then swap some for wrappers; returns the originals."""
    real = await api.backends.knowledge.get()
    api.backends.knowledge.set(dataclasses.replace(real, **swaps))
    return real


async def _ready_document(api: Api, tenant: Tenant, name: str, data: bytes) -> tuple[str, str]:
    kb_id = await create_kb(api, tenant)
    doc_id = await uploaded(api, tenant, kb_id, name, data)
    outcome = await ingest_now(api, tenant.org_id, kb_id, doc_id)
    assert outcome.outcome == ingest.Outcome.READY, outcome
    return kb_id, doc_id


async def test_a_pdf_becomes_ready_with_page_numbered_chunks_its_text_stored_and_an_event(
    kb_api: Api,
) -> None:
    acme = await kb_api.tenant("Acme")
    pdf = make_pdf(
        [["Welcome to the handbook."], ["Parental leave is sixteen weeks at full pay."]],
        outline=[("Introduction", 1), ("Leave", 2)],
    )
    kb_id, doc_id = await _ready_document(kb_api, acme, "handbook.pdf", pdf)
    doc = await document(kb_api, acme, kb_id, doc_id)
    assert (doc["status"], doc["indexed_version"], doc["page_count"]) == ("ready", 1, 2)
    assert doc["chunk_count"] >= 2
    assert doc["error"] is None and doc["indexed_at"]
    assert await vectors_of(kb_api, acme.org_id, kb_id) == doc["chunk_count"]
    text_key = object_keys.document_text(acme.org_id, kb_id, doc_id, 1)
    text = (await kb_api.backends.objects.get(text_key)).decode()
    assert "sixteen weeks" in text
    [hit] = await results(kb_api, acme, kb_id, "How long is parental leave?", top_k=1)
    assert (hit["page"], hit["section"], hit["document_name"]) == (2, "Leave", "handbook.pdf")
    [event] = await events_of(kb_api, acme.org_id, "document.ready")
    assert event == {
        "knowledge_base_id": kb_id,
        "document_id": doc_id,
        "name": "handbook.pdf",
        "version": 1,
        "chunk_count": doc["chunk_count"],
    }


async def test_a_corrupt_pdf_fails_at_once_with_document_corrupt_and_leaves_no_file_or_vector(
    kb_api: Api,
) -> None:
    acme = await kb_api.tenant("Acme")
    kb_id = await create_kb(kb_api, acme)
    corrupt = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R" + b"\x00\xff garbage" * 50
    doc_id = await uploaded(kb_api, acme, kb_id, "broken.pdf", corrupt)
    outcome = await ingest_now(kb_api, acme.org_id, kb_id, doc_id)
    assert outcome.outcome == ingest.Outcome.FAILED
    doc = await document(kb_api, acme, kb_id, doc_id)
    assert doc["status"] == "failed"
    assert doc["error"]["code"] == "document_corrupt"
    assert "PDF" in doc["error"]["message"]
    assert await object_keys_of(kb_api, acme.org_id) == []
    assert await vectors_of(kb_api, acme.org_id) == 0
    [event] = await events_of(kb_api, acme.org_id, "document.failed")
    assert (event["document_id"], event["error_code"]) == (doc_id, "document_corrupt")


async def test_a_pdf_without_any_text_fails_as_empty(sqlite_kb_api: Api) -> None:
    acme = await sqlite_kb_api.tenant("Acme")
    kb_id = await create_kb(sqlite_kb_api, acme)
    doc_id = await uploaded(sqlite_kb_api, acme, kb_id, "scan.pdf", make_pdf([[], []]))
    await ingest_now(sqlite_kb_api, acme.org_id, kb_id, doc_id)
    doc = await document(sqlite_kb_api, acme, kb_id, doc_id)
    assert (doc["status"], doc["error"]["code"]) == ("failed", "document_empty")


async def test_a_failing_embedder_is_a_transient_error_then_fails_the_document_on_the_last_try(
    sqlite_kb_api: Api,
) -> None:
    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    kb_id = await create_kb(api, acme)
    doc_id = await uploaded(api, acme, kb_id, "refunds.md", POLICY_V1)

    def down() -> None:
        raise EmbeddingError("connection refused")

    real = await api.backends.knowledge.get()
    originals = await _engines_with(api, embedder=WrappedEmbedder(real.embedder, down))

    def run(final_attempt: bool) -> Coroutine[Any, Any, ingest.IngestOutcome]:
        return ingest.ingest_document(
            api.backends,
            org_id=acme.org_id,
            kb_id=kb_id,
            document_id=doc_id,
            version=1,
            final_attempt=final_attempt,
        )

    with pytest.raises(Exception) as retried:
        await run(False)
    assert is_transient(retried.value)
    assert (await document(api, acme, kb_id, doc_id))["status"] == "processing"

    with pytest.raises(Exception) as last:
        await run(True)
    assert is_transient(last.value)  # raised again: the task wrapper dead-letters it
    failed = await document(api, acme, kb_id, doc_id)
    assert (failed["status"], failed["error"]["code"]) == ("failed", "document_ingestion_failed")
    assert "connection refused" in failed["error"]["message"]
    key = object_keys.document_original(acme.org_id, kb_id, doc_id, 1, "refunds.md")
    assert key in await object_keys_of(api, acme.org_id)  # kept, so a replay can ingest it

    api.backends.knowledge.set(originals)  # the embedder is back: replaying succeeds
    replayed = await run(False)
    assert replayed.outcome == ingest.Outcome.READY
    ready = await document(api, acme, kb_id, doc_id)
    assert (ready["status"], ready["error"]) == ("ready", None)


async def test_a_document_named_with_another_extension_is_ingested_by_its_content(
    sqlite_kb_api: Api,
) -> None:
    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    kb_id = await create_kb(api, acme)
    answer = await upload(api, acme, kb_id, "refunds.md", POLICY_V1, name="Refunds 2026.pdf")
    assert answer.status_code == 202, answer.text
    doc_id = answer.json()["id"]
    assert (await ingest_now(api, acme.org_id, kb_id, doc_id)).outcome == ingest.Outcome.READY
    [hit] = await results(api, acme, kb_id, "When are refunds paid?", top_k=1)
    assert hit["document_name"] == "Refunds 2026.pdf"


async def test_a_redelivered_task_for_a_ready_version_changes_nothing(sqlite_kb_api: Api) -> None:
    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    kb_id, doc_id = await _ready_document(api, acme, "refunds.md", POLICY_V1)
    before = await document(api, acme, kb_id, doc_id)
    again = await ingest_now(api, acme.org_id, kb_id, doc_id)
    assert (again.outcome, again.reason) == (ingest.Outcome.SKIPPED, "already ready")
    assert await document(api, acme, kb_id, doc_id) == before
    assert len(await events_of(api, acme.org_id, "document.ready")) == 1
    assert await vectors_of(api, acme.org_id) == before["chunk_count"]


async def test_a_reupload_is_indexed_beside_the_old_version_which_stays_visible_until_the_swap(
    kb_api: Api,
) -> None:
    acme = await kb_api.tenant("Acme")
    kb_id, doc_id = await _ready_document(kb_api, acme, "refunds.md", POLICY_V1)
    second = await uploaded(kb_api, acme, kb_id, "refunds.md", POLICY_V2)
    assert second == doc_id

    [hit] = await results(kb_api, acme, kb_id, "When are refunds paid?", top_k=1)
    assert "14 days" in hit["text"] and hit["version"] == 1  # v2 is queued: v1 still answers

    seen_while_both_indexed: list[list[Any]] = []

    async def query_mid_swap() -> None:
        seen_while_both_indexed.append(
            await results(kb_api, acme, kb_id, "When are refunds paid?", top_k=5)
        )

    real = await kb_api.backends.knowledge.get()
    await _engines_with(kb_api, vector_store=WrappedStore(real.vector_store, query_mid_swap))
    outcome = await ingest_now(kb_api, acme.org_id, kb_id, doc_id)
    assert outcome.outcome == ingest.Outcome.READY
    [mid] = seen_while_both_indexed
    assert [(h["version"], "14 days" in h["text"]) for h in mid] == [(1, True)]

    after = await results(kb_api, acme, kb_id, "When are refunds paid?", top_k=5)
    assert [(h["version"], "30 days" in h["text"]) for h in after] == [(2, True)]
    doc = await document(kb_api, acme, kb_id, doc_id)
    assert (doc["version"], doc["indexed_version"], doc["status"]) == (2, 2, "ready")
    assert await vectors_of(kb_api, acme.org_id) == doc["chunk_count"]  # v1's chunks are gone
    prefix = object_keys.document_prefix(acme.org_id, kb_id, doc_id)
    assert await object_keys_of(kb_api, acme.org_id) == [
        f"{prefix}v2/original/refunds.md",
        f"{prefix}v2/text.txt",
    ]


async def test_a_run_overtaken_by_a_newer_upload_removes_only_what_it_wrote(
    sqlite_kb_api: Api,
) -> None:
    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    kb_id = await create_kb(api, acme)
    doc_id = await uploaded(api, acme, kb_id, "refunds.md", POLICY_V1)
    await uploaded(api, acme, kb_id, "refunds.md", POLICY_V2)  # v2 before v1 was ingested
    stale = await ingest.ingest_document(
        api.backends,
        org_id=acme.org_id,
        kb_id=kb_id,
        document_id=doc_id,
        version=1,
        final_attempt=False,
    )
    assert (stale.outcome, stale.reason) == (ingest.Outcome.SKIPPED, "superseded")
    prefix = object_keys.document_prefix(acme.org_id, kb_id, doc_id)
    assert await object_keys_of(api, acme.org_id) == [f"{prefix}v2/original/refunds.md"]
    assert (await ingest_now(api, acme.org_id, kb_id, doc_id)).outcome == ingest.Outcome.READY


async def test_a_document_deleted_while_it_is_ingested_leaves_nothing_behind(
    kb_api: Api,
) -> None:
    acme = await kb_api.tenant("Acme")
    kb_id = await create_kb(kb_api, acme)
    doc_id = await uploaded(kb_api, acme, kb_id, "refunds.md", POLICY_V1)

    async def delete_it() -> None:
        answer = await kb_api.client.delete(
            f"/v1/knowledge-bases/{kb_id}/documents/{doc_id}", headers=acme.headers
        )
        assert answer.status_code == 204

    real = await kb_api.backends.knowledge.get()
    await _engines_with(kb_api, vector_store=WrappedStore(real.vector_store, delete_it))
    outcome = await ingest_now_after_upload(kb_api, acme.org_id, kb_id, doc_id)
    assert outcome.outcome == ingest.Outcome.SKIPPED
    assert await nothing_left(kb_api, acme.org_id) == ([], 0, 0)
    assert await events_of(kb_api, acme.org_id, "document.ready") == []


async def ingest_now_after_upload(
    api: Api, org_id: str, kb_id: str, doc_id: str
) -> ingest.IngestOutcome:
    """`ingest_now` for a version known to be 1 (the row may vanish mid-run)."""
    return await ingest.ingest_document(
        api.backends, org_id=org_id, kb_id=kb_id, document_id=doc_id, version=1, final_attempt=False
    )


async def test_a_task_for_a_document_deleted_while_queued_does_nothing_and_leaves_nothing(
    sqlite_kb_api: Api,
) -> None:
    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    kb_id = await create_kb(api, acme)
    doc_id = await uploaded(api, acme, kb_id, "refunds.md", POLICY_V1)
    await api.client.delete(f"/v1/knowledge-bases/{kb_id}/documents/{doc_id}", headers=acme.headers)
    outcome = await ingest_now_after_upload(api, acme.org_id, kb_id, doc_id)
    assert (outcome.outcome, outcome.reason) == (ingest.Outcome.SKIPPED, "deleted")
    assert await nothing_left(api, acme.org_id) == ([], 0, 0)


async def test_a_file_that_keeps_killing_workers_is_given_up_on(sqlite_kb_api: Api) -> None:
    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    kb_id = await create_kb(api, acme)
    doc_id = await uploaded(api, acme, kb_id, "refunds.md", POLICY_V1)
    starts = ingest.max_ingest_starts(api.settings)
    async with api.backends.database.session() as session:
        await session.execute(
            update(KnowledgeDocument)
            .where(KnowledgeDocument.id == doc_id)
            .values(status="processing", ingest_attempts=starts)
        )
    outcome = await ingest_now(api, acme.org_id, kb_id, doc_id)
    assert (outcome.outcome, outcome.reason) == (ingest.Outcome.SKIPPED, "gave up")
    doc = await document(api, acme, kb_id, doc_id)
    assert (doc["status"], doc["error"]["code"]) == ("failed", "document_ingestion_failed")
    assert await nothing_left(api, acme.org_id) == ([], 0, 1)


async def test_documents_stuck_queued_or_processing_are_queued_again(sqlite_kb_api: Api) -> None:
    import redis.asyncio as aioredis

    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    kb_id = await create_kb(api, acme)
    stuck = await uploaded(api, acme, kb_id, "refunds.md", POLICY_V1)
    fresh = await uploaded(api, acme, kb_id, "other.md", POLICY_V2)
    broker = aioredis.Redis.from_url(api.settings.redis_url)
    queued_before = await broker.llen("ingest")
    async with api.backends.database.session() as session:
        await session.execute(
            update(KnowledgeDocument)
            .where(KnowledgeDocument.id == stuck)
            .values(status="processing", updated_at=utcnow() - timedelta(hours=2))
        )
    requeued = await ingest.requeue_stuck_documents(api.backends, utcnow() - timedelta(hours=1))
    assert requeued == 1
    assert await broker.llen("ingest") == queued_before + 1
    assert fresh != stuck
    # Touched: the next sweep does not send it again.
    assert await ingest.requeue_stuck_documents(api.backends, utcnow() - timedelta(hours=1)) == 0
    await broker.aclose()


async def test_the_stuck_document_sweeper_is_registered_with_the_maintenance_job() -> None:
    from vocalis.knowledge import tasks
    from vocalis.workers.maintenance import STUCK_DOCUMENT_SWEEPERS

    assert tasks.requeue_stuck_documents in STUCK_DOCUMENT_SWEEPERS


def test_chunk_ids_are_stable_and_unique_per_document_version_and_position() -> None:
    assert ingest.chunk_id("doc_1", 2, 7) == "doc_1-v2-00007"
    ids = {ingest.chunk_id(d, v, i) for d in ("doc_1", "doc_2") for v in (1, 2) for i in range(3)}
    assert len(ids) == 12


def test_deleted_keys_helper_names_both_objects_of_a_version() -> None:
    keys = service.version_keys("org_1", "kb_1", "doc_1", "a.pdf", 3)
    assert keys == [
        "orgs/org_1/knowledge-bases/kb_1/documents/doc_1/v3/original/a.pdf",
        "orgs/org_1/knowledge-bases/kb_1/documents/doc_1/v3/text.txt",
    ]


async def test_after_compaction_a_deleted_documents_text_is_gone_from_the_vector_files(
    sqlite_kb_api: Api,
) -> None:
    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    marker = b"Zanzibarquux"
    data = b"# Codes\n\nThe vault code word is " + marker + b" until further notice.\n"
    kb_id, doc_id = await _ready_document(api, acme, "codes.md", data)
    vectors_dir = lancedb_path(api.settings)

    def on_disk() -> bool:
        return any(marker in p.read_bytes() for p in vectors_dir.rglob("*") if p.is_file())

    assert on_disk()
    await api.client.delete(f"/v1/knowledge-bases/{kb_id}/documents/{doc_id}", headers=acme.headers)
    assert await vectors_of(api, acme.org_id) == 0
    assert on_disk()  # LanceDB deletes are logical until older versions are cleaned up
    with pytest.warns(UserWarning):  # "removes every version": fine, nobody else reads here
        assert await service.compact_vector_store(api.backends, keep_deleted_for=timedelta(0))
    assert not on_disk()

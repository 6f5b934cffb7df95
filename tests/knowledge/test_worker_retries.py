"""Transient ingestion failures through a real worker: retried with backoff, then the
document fails with `document_ingestion_failed` and the task is dead-lettered.

The worker embeds through an OpenAI-compatible endpoint that is down (nothing listens on
its port): a real connection failure, not a fake.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fixtures.redis_server import free_port
from tests.knowledge.conftest import Stack, open_stack
from tests.knowledge.harness import create_kb, events_of, eventually, settled, uploaded
from vocalis.knowledge.service import INGEST_TASK
from vocalis.wiring.worker import celery_app


@pytest.fixture(scope="module")
async def down_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """A stack whose embedding endpoint refuses connections."""
    async for running in open_stack(
        tmp_path_factory.mktemp("kb-down"),
        knowledge_embedder="openai",
        knowledge_openai_base_url=f"http://127.0.0.1:{free_port()}/v1",
        knowledge_openai_embedding_dimensions=384,
        task_max_retries=2,
        task_retry_base_s=0.2,
    ):
        yield running


def test_knowledge_tasks_are_routed_to_the_ingest_queue() -> None:
    route = celery_app.amqp.router.route({}, INGEST_TASK)
    assert route["queue"].name == "ingest"


async def test_an_unreachable_embedder_is_retried_then_fails_the_document_and_dead_letters(
    down_stack: Stack,
) -> None:
    api = down_stack.api
    acme = await down_stack.tenant("Acme")
    kb_id = await create_kb(api, acme)
    doc_id = await uploaded(api, acme, kb_id, "refunds.md", b"# Refunds\n\nPaid in 14 days.\n")
    doc = await settled(api, acme, kb_id, doc_id, timeout=120)
    assert doc["status"] == "failed", down_stack.worker.log()[-3000:]
    assert doc["error"]["code"] == "document_ingestion_failed"
    assert "embedding failed" in doc["error"]["message"]
    assert down_stack.worker.log().count("task_retry_scheduled") == 2

    async def letters() -> list[dict[str, Any]]:
        listed = await api.client.get(
            f"/v1/admin/dead-letters?status=open&task_name={INGEST_TASK}", headers=acme.headers
        )
        assert listed.status_code == 200, listed.text
        data: list[dict[str, Any]] = listed.json()["data"]
        return [d for d in data if d["kwargs"].get("document_id") == doc_id]

    [letter] = await eventually(letters, bool, what="the dead letter")
    assert (letter["org_id"], letter["attempts"], letter["transient"]) == (acme.org_id, 3, True)
    [event] = await events_of(api, acme.org_id, "document.failed")
    assert event["error_code"] == "document_ingestion_failed"

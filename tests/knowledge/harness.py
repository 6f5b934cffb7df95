"""The app with the knowledge routers, a real `vocalis worker`, and what the tests inspect.

Until the lead adds them to `vocalis.app.ROUTERS`, the tests mount the knowledge routers
themselves.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import func, select

from tests.api.conftest import Api, Tenant
from tests.fixtures import polling
from vocalis.app import ROUTERS, create_app
from vocalis.core import object_keys
from vocalis.core.migrate import upgrade
from vocalis.events.models import OutboxEvent
from vocalis.knowledge import ingest
from vocalis.knowledge.models import KnowledgeDocument
from vocalis.settings import Settings
from vocalis.wiring import build_backends
from vocalis.workers import publish
from vocalis.workers.lifecycle import api_background

T = TypeVar("T")

KNOWLEDGE_ROUTERS = ("vocalis.knowledge.api", "vocalis.openai_compat.embeddings")


def kb_settings(data_dir: Path, database_url: str, redis_url: str, **overrides: Any) -> Settings:
    """Settings for the knowledge tests: fast retries, everything under `data_dir`."""
    values: dict[str, Any] = {
        "env": "test",
        "data_dir": data_dir,
        "database_url": database_url,
        "redis_url": redis_url,
        "task_visibility_timeout_s": 60,
        "task_retry_base_s": 0.1,
        "task_max_retries": 2,
        "worker_metrics_port": 0,
        "rate_limit_burst": 1000,
        "log_level": "INFO",
    }
    values.update(overrides)
    return Settings(**values)


async def start_kb_app(settings: Settings) -> AsyncIterator[Api]:
    """Migrate, build backends and the app with the knowledge routers, run its lifespan."""
    await asyncio.to_thread(upgrade, settings.resolved_database_url)
    backends = await build_backends(settings)
    app = create_app(settings, backends=backends)
    for module in KNOWLEDGE_ROUTERS:
        if module not in ROUTERS:
            app.include_router(importlib.import_module(module).router)
    publish.reset_broker_state()
    async with app.router.lifespan_context(app), api_background(backends):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(app, client, backends, settings)
    await backends.close()


def worker_env(settings: Settings) -> dict[str, str]:
    """The same settings as `VOCALIS_*` environment variables for a worker process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOCALIS_")}
    for name, value in settings.model_dump().items():
        if isinstance(value, dict | list):
            text = json.dumps(value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[f"VOCALIS_{name.upper()}"] = text
    return env


class VocalisWorker:
    """`python -m vocalis worker` as a subprocess: what `vocalis run` and production start."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.env = worker_env(settings)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def log(self) -> str:
        """What the worker wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 90.0) -> None:
        """Start the worker and wait until it consumes."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vocalis", "worker", "--concurrency", "2"],
            env=self.env,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        tail = self.log()[-4000:]
        self.stop()
        pytest.fail(f"`vocalis worker` did not become ready:\n{tail}")

    def stop(self) -> None:
        """SIGTERM (warm shutdown), SIGKILL if it hangs."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass
        self.process = None


async def eventually(
    probe: Callable[[], Awaitable[T]],
    ok: Callable[[T], bool],
    *,
    timeout: float = 60.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """`tests.fixtures.polling.eventually` with the longer wait ingestion needs."""
    return await polling.eventually(probe, ok, timeout=timeout, interval=interval, what=what)


# --- actions through the API -------------------------------------------------------------
async def create_kb(api: Api, tenant: Tenant, name: str = "Handbook") -> str:
    """A new knowledge base's id."""
    created = await api.client.post(
        "/v1/knowledge-bases", json={"name": name}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def upload(
    api: Api, tenant: Tenant, kb_id: str, filename: str, data: bytes, **form: str
) -> httpx.Response:
    """POST a multipart upload with the file in the field `file`."""
    return await api.client.post(
        f"/v1/knowledge-bases/{kb_id}/documents",
        files={"file": (filename, data, "application/octet-stream")},
        data=form or None,
        headers=tenant.headers,
    )


async def uploaded(api: Api, tenant: Tenant, kb_id: str, filename: str, data: bytes) -> str:
    """Upload a document that must be accepted; its id."""
    response = await upload(api, tenant, kb_id, filename, data)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def document(api: Api, tenant: Tenant, kb_id: str, doc_id: str) -> dict[str, Any]:
    """The document as the API shows it."""
    got = await api.client.get(
        f"/v1/knowledge-bases/{kb_id}/documents/{doc_id}", headers=tenant.headers
    )
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


async def settled(
    api: Api, tenant: Tenant, kb_id: str, doc_id: str, *, timeout: float = 90.0
) -> dict[str, Any]:
    """Wait until the document is `ready` or `failed`."""
    return await eventually(
        lambda: document(api, tenant, kb_id, doc_id),
        lambda d: d["status"] in ("ready", "failed"),
        timeout=timeout,
        what=f"document {doc_id} to settle",
    )


async def query(api: Api, tenant: Tenant, kb_id: str, text: str, **body: Any) -> httpx.Response:
    """POST a query to a knowledge base."""
    return await api.client.post(
        f"/v1/knowledge-bases/{kb_id}/query",
        json={"query": text, **body},
        headers=tenant.headers,
    )


async def results(api: Api, tenant: Tenant, kb_id: str, text: str, **body: Any) -> list[Any]:
    """The results of a query that must succeed."""
    response = await query(api, tenant, kb_id, text, **body)
    assert response.status_code == 200, response.text
    found: list[Any] = response.json()["results"]
    return found


async def ingest_now(api: Api, org_id: str, kb_id: str, doc_id: str) -> ingest.IngestOutcome:
    """Run the ingest task's body in this process (tests that need no worker)."""
    async with api.backends.database.session() as session:
        version = await session.scalar(
            select(KnowledgeDocument.version).where(KnowledgeDocument.id == doc_id)
        )
    assert version is not None
    return await ingest.ingest_document(
        api.backends,
        org_id=org_id,
        kb_id=kb_id,
        document_id=doc_id,
        version=version,
        final_attempt=False,
    )


# --- what is left behind -----------------------------------------------------------------
async def object_keys_of(api: Api, org_id: str) -> list[str]:
    """Every object key of an organisation."""
    return [info.key async for info in api.backends.objects.list(object_keys.org_prefix(org_id))]


async def vectors_of(api: Api, org_id: str, kb_id: str | None = None) -> int:
    """Chunks the vector store holds for an organisation (or one knowledge base)."""
    store = (await api.backends.knowledge.get()).vector_store
    return await store.count(org_id, kb_id)


async def document_rows(api: Api, org_id: str) -> int:
    """Document rows of an organisation."""
    async with api.backends.database.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(KnowledgeDocument)
            .where(KnowledgeDocument.org_id == org_id)
        )
    return int(count or 0)


async def events_of(api: Api, org_id: str, type_: str) -> list[dict[str, Any]]:
    """The `data` of the outbox events of one type for an organisation."""
    async with api.backends.database.session() as session:
        rows = await session.scalars(
            select(OutboxEvent).where(OutboxEvent.org_id == org_id, OutboxEvent.type == type_)
        )
        return [dict(row.data) for row in rows]


async def nothing_left(api: Api, org_id: str) -> tuple[list[str], int, int]:
    """(object keys, vectors, document rows) of an organisation: all empty means clean."""
    return (
        await object_keys_of(api, org_id),
        await vectors_of(api, org_id),
        await document_rows(api, org_id),
    )

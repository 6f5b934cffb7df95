"""Every backend and engine a process talks to, as typed fields, built once.

The composition root (`vocalis.wiring`) is the only place that reads the settings to
choose adapters and engines; it builds a `Backends` and hands it to the app, the worker
and the CLI. Domain code receives a `Backends` and never imports a driver. Costly
engines (models, vector-store connections) sit behind `Lazy` slots, built on first use.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import redis.asyncio as aioredis

from vocalis.core.db import Database
from vocalis.core.lazy import Lazy
from vocalis.core.metrics import BACKEND_UP
from vocalis.ports.document_store import DocumentStore
from vocalis.ports.events import EventSink
from vocalis.ports.knowledge import KnowledgeEngines
from vocalis.ports.llm import ModelChains
from vocalis.ports.mcp import McpClient
from vocalis.ports.object_store import ObjectStore
from vocalis.ports.retriever import Retriever
from vocalis.ports.secrets import SecretCipher, SecretProvider
from vocalis.ports.speech import VoiceEngines
from vocalis.settings import Settings


@dataclass
class Backends:
    """Every backend the process talks to, built once."""

    settings: Settings
    database: Database
    redis: aioredis.Redis
    redis_url: str
    documents: DocumentStore
    objects: ObjectStore
    secrets: SecretProvider
    redis_embedded: bool  # the embedded server (started by the process), not a configured one
    knowledge: Lazy[KnowledgeEngines]  # embedder, token counter, vector store
    voice: Lazy[VoiceEngines]  # STT, TTS, VAD (turn detector)
    phone_voice: Lazy[VoiceEngines]  # the same with the telephone-band STT (8 kHz calls)
    retriever: Retriever  # the knowledge bases' hybrid search, for agents
    events: EventSink  # domain events: the transactional outbox
    models: ModelChains  # LLM chains sharing breakers and a cost ledger (API and workers)
    webhook_http: Lazy[httpx.AsyncClient]  # the SSRF-guarded client deliveries use
    secret_box: Lazy[SecretCipher]  # encrypts webhook signing secrets at rest
    mcp: McpClient  # MCP servers' tools (official SDK client, SSRF-guarded)

    def checks(self) -> dict[str, Callable[[], Awaitable[object]]]:
        """A readiness probe per backend, by name."""
        return {
            "database": self.database.ping,
            "redis": self.redis.ping,
            "documents": self.documents.ping,
            "objects": self.objects.ping,
            "secrets": self.secrets.ping,
        }

    async def readiness(self, timeout: float = 3.0) -> dict[str, str]:
        """Check every backend concurrently; 'ok' or the error in plain words."""

        async def one(check: Callable[[], Awaitable[object]]) -> str:
            try:
                await asyncio.wait_for(check(), timeout)
            except TimeoutError:
                return f"no answer within {timeout:g}s"
            except Exception as exc:  # a probe reports, it never raises
                return f"{type(exc).__name__}: {exc}"[:300]
            return "ok"

        names = list(self.checks())
        results = await asyncio.gather(*(one(c) for c in self.checks().values()))
        for name, result in zip(names, results, strict=True):
            BACKEND_UP.labels(backend=name).set(1 if result == "ok" else 0)
        return dict(zip(names, results, strict=True))

    def describe(self) -> dict[str, str]:
        """Which adapter serves each port (for /readyz and `vocalis doctor`)."""
        return {
            "database": self.database.engine.dialect.name,
            "redis": "embedded" if self.redis_embedded else "redis",
            "documents": self.documents.name,
            "objects": self.objects.name,
            "secrets": self.secrets.name,
        }

    async def close(self) -> None:
        """Release every connection and what the lazy slots built."""
        await self.models.aclose()
        await self.webhook_http.close()
        await self.knowledge.close()
        await self.phone_voice.close()
        await self.voice.close()
        await self.documents.close()
        close_secrets = getattr(self.secrets, "close", None)
        if close_secrets is not None and inspect.isawaitable(result := close_secrets()):
            await result
        await self.objects.close()
        await self.redis.aclose()
        await self.database.dispose()

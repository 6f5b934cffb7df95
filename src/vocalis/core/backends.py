"""The one factory that picks an adapter for every port from the settings.

Domain code receives a `Backends` and never imports a driver.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import redis.asyncio as aioredis

from vocalis.adapters import embedded_redis
from vocalis.core.db import Database
from vocalis.core.metrics import BACKEND_UP
from vocalis.ports.document_store import DocumentStore
from vocalis.ports.object_store import ObjectStore
from vocalis.ports.secrets import SecretProvider
from vocalis.settings import Settings


def resolve_redis_url(settings: Settings) -> str:
    """The Redis URL: configured, or the embedded server's (started if needed)."""
    if settings.redis_url:
        return settings.redis_url
    return embedded_redis.ensure_running(settings.data_dir)


def build_secrets(settings: Settings) -> SecretProvider:
    """The configured secrets provider: Vault, or the environment (and `.env`)."""
    if settings.secrets_backend == "vault":
        from vocalis.adapters.vault_secrets import VaultSecretProvider

        return VaultSecretProvider.from_settings(settings)
    from vocalis.adapters.env_secrets import EnvSecretProvider

    return EnvSecretProvider(dotenv=Path(".env"))


def build_document_store(settings: Settings, database: Database) -> DocumentStore:
    """MongoDB when a URL is configured, else the JSON table in the relational DB."""
    if settings.document_store_url:
        from vocalis.adapters.mongo_document_store import MongoDocumentStore

        return MongoDocumentStore(settings.document_store_url)
    from vocalis.adapters.sql_document_store import SqlDocumentStore

    return SqlDocumentStore(database)


async def build_object_store(settings: Settings, secrets: SecretProvider) -> ObjectStore:
    """S3 for `s3://bucket`, a directory for `file://` or the default."""
    url = settings.object_store_url
    if url.startswith("s3://"):
        from vocalis.adapters.s3_object_store import S3ObjectStore

        return S3ObjectStore(
            urlparse(url).netloc,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region,
            access_key=await secrets.get_optional("s3/access_key_id"),
            secret_key=await secrets.get_optional("s3/secret_access_key"),
        )
    from vocalis.adapters.local_object_store import LocalObjectStore

    root = Path(urlparse(url).path) if url.startswith("file://") else settings.data_dir / "objects"
    return LocalObjectStore(root)


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
    extras: dict[str, object] = field(default_factory=dict)

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
            "redis": "embedded"
            if self.redis_url == embedded_redis.url_for(self.settings.data_dir)
            else "redis",
            "documents": self.documents.name,
            "objects": self.objects.name,
            "secrets": self.secrets.name,
        }

    async def close(self) -> None:
        """Release every connection."""
        await self.documents.close()
        close_secrets = getattr(self.secrets, "close", None)
        if close_secrets is not None and inspect.isawaitable(result := close_secrets()):
            await result
        await self.objects.close()
        await self.redis.aclose()
        await self.database.dispose()


async def build_backends(settings: Settings) -> Backends:
    """Build every adapter from the settings."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.resolved_database_url)
    redis_url = await asyncio.to_thread(resolve_redis_url, settings)
    secrets = build_secrets(settings)
    return Backends(
        settings=settings,
        database=database,
        redis=aioredis.Redis.from_url(redis_url, decode_responses=False),
        redis_url=redis_url,
        documents=build_document_store(settings, database),
        objects=await build_object_store(settings, secrets),
        secrets=secrets,
    )

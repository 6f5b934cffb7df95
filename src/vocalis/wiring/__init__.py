"""The composition root: the one place that reads the settings to choose adapters and engines.

`build_backends(settings)` builds every adapter (relational, documents, Redis, objects,
secrets, vectors, embeddings, LLM chains, speech engines) and the objects made of them
(the knowledge retriever, the event sink, the webhook client and secret box) and returns
them as one typed `Backends`. The app factory, the worker and the CLI call it; nothing else
imports `vocalis.adapters` (the layer contract in `pyproject.toml` checks it).
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from urllib.parse import urlparse

import httpx
import redis.asyncio as aioredis

from vocalis.adapters import embedded_redis
from vocalis.adapters.mcp_client import McpSdkClient
from vocalis.adapters.openai_chat import OpenAIChatModel
from vocalis.agents.chains import AgentModelChains, Connect
from vocalis.agents.model_providers import ModelProviderDirectory
from vocalis.agents.providers import CostLedger
from vocalis.core.backends import Backends
from vocalis.core.db import Database
from vocalis.core.errors import BackendUnavailable
from vocalis.core.lazy import Lazy
from vocalis.core.ssrf import guarded_client, guarded_client2
from vocalis.events.outbox import outbox_sink
from vocalis.knowledge.retrieval import KnowledgeRetriever
from vocalis.ports.document_store import DocumentStore
from vocalis.ports.knowledge import KnowledgeEngines
from vocalis.ports.llm import ChatEndpoint
from vocalis.ports.object_store import ObjectStore
from vocalis.ports.secrets import SecretCipher, SecretProvider
from vocalis.ports.speech import VoiceEngines
from vocalis.settings import Settings
from vocalis.webhooks.secret_box import build_secret_box
from vocalis.wiring.knowledge import build_knowledge_engines, close_knowledge_engines
from vocalis.wiring.speech import (
    build_phone_stt,
    build_voice_engines,
    check_engine_names,
    needs_api_key,
)


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


def connect_chat_model(settings: Settings) -> Connect:
    """Builds the OpenAI-compatible adapter of one endpoint: an organisation's endpoint sends
    every request (redirects included) through the SSRF guard; the deployment's does not."""

    def connect(endpoint: ChatEndpoint, secrets: SecretProvider) -> OpenAIChatModel:
        if endpoint.deployment:
            return OpenAIChatModel(endpoint, secrets)
        http = guarded_client2(
            settings.outbound_allowlist_entries,
            timeout=endpoint.timeout_s,
            follow_redirects=True,
        )
        return OpenAIChatModel(endpoint, secrets, http_client=http)

    return connect


def build_model_chains(
    settings: Settings,
    secrets: SecretProvider,
    database: Database | None = None,
    cipher: Lazy[SecretCipher] | None = None,
) -> AgentModelChains:
    """LLM chains over OpenAI-compatible endpoints, priced from `llm_prices`; organisations'
    registered model providers are read from `database` (their keys opened by `cipher`)."""
    directory = (
        ModelProviderDirectory(database, cipher)
        if database is not None and cipher is not None
        else None
    )
    return AgentModelChains(
        connect=connect_chat_model(settings),
        secrets=secrets,
        ledger=CostLedger(settings.llm_prices),
        providers=directory,
    )


async def _audio_api_key(settings: Settings, secrets: SecretProvider) -> str | None:
    if not needs_api_key(settings):
        return None
    return await secrets.get_optional(settings.voice_openai_api_key_secret)


async def load_voice_engines(settings: Settings, secrets: SecretProvider) -> VoiceEngines:
    """The configured speech engines, loaded in a worker thread (never on the event loop)."""
    api_key = await _audio_api_key(settings, secrets)
    try:
        return await asyncio.to_thread(build_voice_engines, settings, api_key=api_key)
    except BackendUnavailable:
        raise
    except Exception as exc:  # a missing package, a bad checksum, an unloadable library
        raise BackendUnavailable(f"The voice engines could not be loaded: {exc}") from exc


async def load_phone_voice_engines(
    settings: Settings, secrets: SecretProvider, voice: Lazy[VoiceEngines]
) -> VoiceEngines:
    """The engines of telephone-band calls: the wideband set with the phone-band STT
    (`voice_phone_whisper_model`), loaded in a worker thread."""
    engines = await voice.get()
    api_key = await _audio_api_key(settings, secrets)
    stt = await asyncio.to_thread(build_phone_stt, settings, api_key=api_key)
    return dataclasses.replace(engines, stt=stt)


def webhook_client(settings: Settings) -> Lazy[httpx.AsyncClient]:
    """The SSRF-guarded HTTP client webhook deliveries use (built on first delivery)."""

    async def build() -> httpx.AsyncClient:
        return guarded_client(
            settings.outbound_allowlist_entries, timeout=settings.webhook_timeout_s
        )

    async def close(client: httpx.AsyncClient) -> None:
        await client.aclose()

    return Lazy(build, close=close)


def secret_cipher(settings: Settings, secrets: SecretProvider) -> Lazy[SecretCipher]:
    """The box that encrypts webhook signing secrets (its keys read on first use)."""

    async def build() -> SecretCipher:
        return await build_secret_box(settings, secrets)

    return Lazy(build)


async def build_backends(settings: Settings) -> Backends:
    """Build every adapter and engine from the settings (costly engines on first use).

    Engine names are checked here, before anything starts: a misspelt
    `VOCALIS_VOICE_*_ENGINE` fails the start-up, not the first call.
    """
    check_engine_names(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.resolved_database_url)
    redis_url = await asyncio.to_thread(resolve_redis_url, settings)
    redis = aioredis.Redis.from_url(redis_url, decode_responses=False)
    secrets = build_secrets(settings)

    async def knowledge_engines() -> KnowledgeEngines:
        return await build_knowledge_engines(settings, secrets, redis)

    async def voice_engines() -> VoiceEngines:
        return await load_voice_engines(settings, secrets)

    voice = Lazy(voice_engines)

    async def phone_voice_engines() -> VoiceEngines:
        return await load_phone_voice_engines(settings, secrets, voice)

    knowledge = Lazy(knowledge_engines, close=close_knowledge_engines)
    secret_box = secret_cipher(settings, secrets)
    return Backends(
        settings=settings,
        database=database,
        redis=redis,
        redis_url=redis_url,
        documents=build_document_store(settings, database),
        objects=await build_object_store(settings, secrets),
        secrets=secrets,
        redis_embedded=redis_url == embedded_redis.url_for(settings.data_dir),
        knowledge=knowledge,
        voice=voice,
        phone_voice=Lazy(phone_voice_engines),
        retriever=KnowledgeRetriever(settings=settings, database=database, knowledge=knowledge),
        events=outbox_sink(database),
        models=build_model_chains(settings, secrets, database, secret_box),
        webhook_http=webhook_client(settings),
        secret_box=secret_box,
        mcp=McpSdkClient(settings.outbound_allowlist_entries),
    )


__all__ = [
    "build_backends",
    "build_document_store",
    "build_model_chains",
    "build_object_store",
    "build_secrets",
    "load_voice_engines",
    "resolve_redis_url",
    "secret_cipher",
    "webhook_client",
]
